"""The one place where the notifier's adapters are wired to its handlers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import httpx
from contracts_schemas import topics
from fastapi import FastAPI
from servicekit.clock import Clock
from servicekit.runner import Loop
from servicekit.runtime import Runtime

from notifier.adapters.channel import Channel, ChannelRouter
from notifier.adapters.email_smtp import SmtpEmailChannel
from notifier.adapters.print_queue import DirectoryPrintQueue, LetterChannel
from notifier.adapters.render import Renderer
from notifier.adapters.sms_http import VonageSmsChannel
from notifier.config import NotifierSettings
from notifier.domain.messages import ChannelKind
from notifier.domain.ratelimit import DEFAULT_RATE_LIMITS
from notifier.handlers import Notifier, Worker

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
EVENTS_GROUP = "notifier.events"
INPUT_TOPICS = (
    topics.IDENTITY_CUSTOMER,
    topics.IDENTITY_CODES,
    topics.CLAIMS_CLAIM,
    topics.DOCUMENTS_MAILBOX,
    topics.LOYALTY_ACCOUNT,
)


@dataclass
class Service:
    runtime: Runtime
    notifier: Notifier
    settings: NotifierSettings
    http: httpx.AsyncClient

    def loops(self) -> list[Loop]:
        """The consumer and the delivery worker. No outbox relay: the notifier publishes
        no events (its consumer's dead letters go straight to the dead-letter topic)."""
        loops = [self.runtime.consumer_loop(EVENTS_GROUP, INPUT_TOPICS, self.notifier.consume)]
        if self.settings.run_worker:
            loops.append(self.worker().run)
        return loops

    def worker(self) -> Worker:
        return Worker(
            self.notifier,
            self.runtime.pool,
            concurrency=self.settings.worker_concurrency,
            poll_seconds=self.settings.worker_poll_seconds,
        )

    async def close(self) -> None:
        await self.http.aclose()
        await self.runtime.close()


def channels(settings: NotifierSettings, http: httpx.AsyncClient, clock: Clock) -> ChannelRouter:
    """NT-1: the channels this environment configures (an unconfigured one is absent)."""
    configured: dict[ChannelKind, Channel] = {}
    smtp = settings.smtp()
    if smtp is not None:
        configured[ChannelKind.EMAIL] = SmtpEmailChannel(smtp, clock=clock.now)
    sms = settings.sms()
    if sms is not None:
        configured[ChannelKind.SMS] = VonageSmsChannel(http, sms, clock=clock.now)
    if settings.print_queue_dir is not None:
        queue = DirectoryPrintQueue(settings.print_queue_dir)
        configured[ChannelKind.LETTER] = LetterChannel(queue, settings.letters(), clock=clock.now)
    return ChannelRouter(configured)


async def build(
    settings: NotifierSettings, clock: Clock | None = None, channel: Channel | None = None
) -> Service:
    """`channel` replaces the configured channels (benchmarks, tests of the wiring)."""
    runtime = await Runtime.start(settings, MIGRATIONS, clock)
    http = httpx.AsyncClient()
    notifier = Notifier(
        clock=runtime.clock,
        renderer=Renderer(settings.rendering()),
        channels=channel or channels(settings, http, runtime.clock),
        policy=settings.retry_policy(),
        limits=DEFAULT_RATE_LIMITS if settings.rate_limits_enabled else None,
        # Backoff jitter, not security: a seeded PRNG is what the domain expects.
        random=random.Random().random,  # noqa: S311
    )
    return Service(runtime, notifier, settings, http)


def create_http_app(service: Service) -> FastAPI:
    from notifier.entrypoints.api import register

    # Operators only (service credentials): the notifier has no customer-facing API, so it
    # needs no token verifier (and no PORTAL_JWKS).
    return service.runtime.http_app(service, register)
