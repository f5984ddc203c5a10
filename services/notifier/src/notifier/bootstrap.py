"""The one place where the notifier's adapters are wired to its handlers.

It builds the runtime, the transactions over `PostgresNotifierUnitOfWork`, the event
stream and the two halves of the handlers; it never imports an entrypoint. The CLI's
`serve` subscribes the intake to the stream (`entrypoints/stream.py`), adds the delivery
worker (`entrypoints/worker.py`) and serves the operator API (`entrypoints/api.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from servicekit.clock import Clock
from servicekit.runner import Loop
from servicekit.runtime import Runtime
from servicekit.stream import EventStream
from servicekit.tracing import traced_client
from servicekit.unit_of_work import Transactions

from notifier.adapters.channel import Channel, ChannelRouter
from notifier.adapters.documents_http import HttpDocumentSource
from notifier.adapters.email_smtp import SmtpEmailChannel
from notifier.adapters.postgres import PostgresNotifierUnitOfWork
from notifier.adapters.print_queue import DirectoryPrintQueue, LetterChannel
from notifier.adapters.render import Renderer
from notifier.adapters.sms_http import VonageSmsChannel
from notifier.config import NotifierSettings
from notifier.domain.messages import ChannelKind
from notifier.domain.ratelimit import DEFAULT_RATE_LIMITS
from notifier.handlers.dispatch import Dispatch
from notifier.handlers.intake import Intake
from notifier.unit_of_work import NotifierUnitOfWork

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class Service:
    runtime: Runtime
    settings: NotifierSettings
    transactions: Transactions[NotifierUnitOfWork]
    stream: EventStream[NotifierUnitOfWork]
    intake: Intake
    dispatch: Dispatch
    http: httpx.AsyncClient
    #: Loops the entrypoints add (the delivery worker).
    workers: list[Loop] = field(default_factory=list)
    #: The configured channels (None when a test or benchmark passed its own channel).
    router: ChannelRouter | None = None

    def loops(self) -> list[Loop]:
        """The stream's subscribers, their consumer lag and the workers. No outbox relay:
        the notifier publishes no events (its consumer's dead letters go through the stream)."""
        return [
            *self.runtime.event_loops(self.stream, relay=False),
            *self.workers,
        ]

    async def close(self) -> None:
        """After the loops stopped: the SMTP sessions, the HTTP client, the runtime."""
        if self.router is not None:
            await self.router.close()
        await self.http.aclose()
        await self.runtime.close()


def channels(settings: NotifierSettings, http: httpx.AsyncClient, clock: Clock) -> ChannelRouter:
    """NT-1: the channels this environment configures (an unconfigured one is absent)."""
    configured: dict[ChannelKind, Channel] = {}
    smtp = settings.smtp()
    if smtp is not None:
        configured[ChannelKind.EMAIL] = SmtpEmailChannel(smtp, clock=clock)
    sms = settings.sms()
    if sms is not None:
        configured[ChannelKind.SMS] = VonageSmsChannel(http, sms, clock=clock)
    if settings.print_queue_dir is not None:
        queue = DirectoryPrintQueue(settings.print_queue_dir)
        documents = settings.documents()
        source = HttpDocumentSource(http, documents) if documents is not None else None
        configured[ChannelKind.LETTER] = LetterChannel(
            queue, settings.letters(), clock=clock, documents=source
        )
    return ChannelRouter(configured)


async def build(
    settings: NotifierSettings, clock: Clock | None = None, channel: Channel | None = None
) -> Service:
    """`channel` replaces the configured channels (benchmarks, tests of the wiring)."""
    runtime = await Runtime.start(settings, MIGRATIONS, clock)
    transactions: Transactions[NotifierUnitOfWork] = runtime.transactions(
        PostgresNotifierUnitOfWork
    )
    http = traced_client()
    router = None
    if channel is None:
        router = channel = channels(settings, http, runtime.clock)
    intake = Intake(clock=runtime.clock, renderer=Renderer(settings.rendering()))
    dispatch = Dispatch(
        clock=runtime.clock,
        channels=channel,
        policy=settings.retry_policy(),
        limits=DEFAULT_RATE_LIMITS if settings.rate_limits_enabled else None,
        # Backoff jitter, not security: a seeded PRNG is what the domain expects.
        random=random.Random().random,  # noqa: S311
    )
    stream = runtime.stream(transactions)
    return Service(runtime, settings, transactions, stream, intake, dispatch, http, router=router)
