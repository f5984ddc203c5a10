"""The notifier's handlers wired to the in-memory unit of work, a fixed clock and a
recording channel: what the handler unit tests drive (no database, no broker)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from notifier.adapters.channel import PermanentSendError, RetryableSendError
from notifier.adapters.memory import InMemoryNotifierUnitOfWork
from notifier.adapters.render import Renderer
from notifier.domain.delivery import RetryPolicy
from notifier.domain.guard import SensitiveContentError
from notifier.domain.messages import OutgoingMessage, RenderedMessage
from notifier.domain.ratelimit import DEFAULT_RATE_LIMITS
from notifier.handlers import reports
from notifier.handlers.dispatch import Attempt, ClaimDue, Dispatch, Outcome
from notifier.handlers.intake import Intake
from notifier.unit_of_work import DeliveryRecord, LogEntry, NotifierUnitOfWork
from servicekit.clock import FixedClock
from servicekit.memory import memory_transactions
from servicekit.unit_of_work import Transactions

T = TypeVar("T")
POLICY = RetryPolicy(
    max_attempts=3,
    base_delay=timedelta(seconds=30),
    max_delay=timedelta(minutes=5),
    sending_lease=timedelta(minutes=5),
)


@dataclass
class RecordingChannel:
    """Accepts every message, or raises what `failures` says (one per send)."""

    sent: list[tuple[OutgoingMessage, RenderedMessage]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    async def send(self, message: OutgoingMessage, rendered: RenderedMessage) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((message, rendered))
        return f"ref-{len(self.sent)}"

    def fail_next(self, *errors: RetryableSendError | PermanentSendError) -> None:
        self.failures.extend(errors)


@dataclass
class Handlers:
    clock: FixedClock
    uow: InMemoryNotifierUnitOfWork
    transactions: Transactions[NotifierUnitOfWork]
    intake: Intake
    dispatch: Dispatch
    channel: RecordingChannel

    async def consume(self, *events: Any) -> None:
        """As the stream subscriber does: the intake in one transaction."""
        await self.transactions.run(lambda uow: self.intake.handle(list(events), uow))

    async def claim(self, limit: int = 100) -> list[Attempt]:
        claim = await self.transactions.execute(self.dispatch.claim, ClaimDue(limit))
        return claim.attempts

    async def send(self, attempt: Attempt) -> Outcome:
        return await self.dispatch.send(attempt)

    async def record(self, outcome: Outcome) -> bool:
        return await self.transactions.execute(self.dispatch.record, outcome)

    async def deliver_due(self) -> list[Outcome]:
        """One round of the worker: claim, send, record."""
        outcomes = [await self.send(a) for a in await self.claim()]
        for outcome in outcomes:
            assert await self.record(outcome)
        return outcomes

    async def deliveries(self, **query: Any) -> list[DeliveryRecord]:
        return await self.transactions.execute(
            reports.find_deliveries, reports.FindDeliveries(**query)
        )

    async def log(self, message_key: str) -> list[LogEntry]:
        found = await self.transactions.execute(reports.delivery_with_log, message_key)
        return found.log

    async def statuses(self, message_key: str) -> list[str]:
        return [entry.status for entry in await self.log(message_key)]


class RefusingRenderer(Renderer):
    """A renderer whose NT-5 guard refuses every text."""

    def render(self, message: OutgoingMessage, *, withheld: Iterable[str] = ()) -> RenderedMessage:
        raise SensitiveContentError(["iban"])


def handlers(now: Any, *, rate_limits: bool = True) -> Handlers:
    clock = FixedClock(now)
    uow = InMemoryNotifierUnitOfWork()
    transactions: Transactions[NotifierUnitOfWork] = memory_transactions(uow)
    channel = RecordingChannel()
    intake = Intake(clock=clock, renderer=Renderer())
    dispatch = Dispatch(
        clock=clock,
        channels=channel,
        policy=POLICY,
        limits=DEFAULT_RATE_LIMITS if rate_limits else None,
        random=random.Random(7).random,
    )
    return Handlers(clock, uow, transactions, intake, dispatch, channel)
