"""The notifier's unit of work: servicekit's (event log, inbox) plus its own repositories.

Handlers get one of these, already inside its transaction, and never see SQL, pools or
connections. `adapters/postgres.py` implements it on PostgreSQL, `adapters/memory.py` in
plain Python objects for unit tests; both keep the same promises:

- `deliveries.add` inserts only keys not stored yet (NT-4: one message per triggering
  event, recipient and channel) and logs `queued` for what was new, atomically;
- `deliveries.claim_due` hands out each due row to one claimer only (PostgreSQL:
  `FOR UPDATE SKIP LOCKED`) and, with `lock_buckets`, serialises NT-6 decisions per bucket
  of the waiting rows it claimed, until the transaction ends;
- `deliveries.record_results` writes a round of outcomes at once, each fenced on its
  attempt (status `sending`, attempts, replays): a late result of an attempt that was
  taken over changes nothing;
- every transition of a delivery is appended to the delivery log in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from servicekit.unit_of_work import UnitOfWork

from notifier.domain.contacts import ContactView
from notifier.domain.delivery import Delivery, DeliveryStatus
from notifier.domain.dispatch import Claimed, Step
from notifier.domain.messages import ChannelKind, MessageKind, OutgoingMessage, RenderedMessage

# ------------------------------------------------------------------ what is stored


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A planned message with its text (or the reason it has none), ready to insert."""

    message: OutgoingMessage
    delivery: Delivery
    rate_bucket: str
    rendered: RenderedMessage | None


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """A delivery handed to one claimer, with the text stored for it."""

    claimed: Claimed
    rendered: RenderedMessage | None


#: An attempt: message key, attempts, replays (what a result is fenced on).
AttemptId = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """The outcome of one attempt, to be written fenced on the attempt (`before`)."""

    before: Delivery
    after: Delivery
    message: OutgoingMessage
    detail: str | None

    @property
    def attempt(self) -> AttemptId:
        return (self.before.message_key, self.before.attempts, self.before.replays)


@dataclass(frozen=True, slots=True)
class Replayable:
    """A delivery locked for an operator's replay; `has_text` is False when the NT-5 guard
    refused its text (nothing to send)."""

    delivery: Delivery
    has_text: bool


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A delivery as operators see it: state and metadata, never the content."""

    delivery: Delivery
    customer_id: str
    kind: MessageKind
    channel: ChannelKind
    recipient: str  # masked
    event_id: UUID
    event_type: str
    attempted_at: datetime | None
    created_at: datetime
    has_text: bool


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of a delivery's log (OPS-1): a transition, never content."""

    message_key: str
    status: str
    at: datetime
    attempt: int = 0
    detail: str | None = None


# ------------------------------------------------------------------ repositories


class ContactRepository(Protocol):
    """NT-3: one `ContactView` per customer."""

    async def lock(
        self, customer_ids: Iterable[str], now: datetime
    ) -> dict[str, ContactView | None]:
        """The views of `customer_ids` (None: nothing folded yet), held until the
        transaction ends, so two consumers folding one customer serialise."""
        ...

    async def read(self, customer_ids: Iterable[str]) -> dict[str, ContactView]: ...

    async def save(self, views: Sequence[ContactView], now: datetime) -> None: ...


class DeliveryRepository(Protocol):
    """NT-4: one row per message key, and the transitions of its delivery."""

    async def add(
        self, new: Sequence[NewDelivery], now: datetime
    ) -> list[tuple[str, DeliveryStatus]]:
        """Insert what is not stored yet (and log it); returns the keys that were new."""
        ...

    async def claim_due(
        self, now: datetime, limit: int, *, lock_buckets: bool = False
    ) -> list[ClaimedRow]:
        """Due or expired waiting deliveries and SENDING ones whose lease ran out, each to
        one claimer only, until the transaction ends. With `lock_buckets`, the rate-limit
        buckets of the claimed waiting deliveries are locked too (NT-6 decisions on them
        serialise), so that `rate_buckets.send_times` read afterwards is not stale."""
        ...

    async def apply_steps(self, steps: Sequence[Step], now: datetime) -> None:
        """Write the decided transitions of claimed rows, and log them."""
        ...

    async def record_results(self, results: Sequence[AttemptResult]) -> set[AttemptId]:
        """The outcomes of attempts, each fenced on its attempt, with their log entries;
        returns the attempts written (one that was taken over is not; a round may hold a
        late outcome and the current one of the same key)."""
        ...

    async def for_replay(self, message_key: str) -> Replayable | None:
        """The delivery, locked until the transaction ends (None: unknown key)."""
        ...

    async def requeue(self, after: Delivery, detail: str, now: datetime) -> None:
        """Store an operator's replay (DEAD -> QUEUED) and log it."""
        ...


class DeliveryLogRepository(Protocol):
    async def append(self, entries: Sequence[LogEntry]) -> None: ...

    async def of(self, message_key: str) -> list[LogEntry]: ...


class RateBucketRepository(Protocol):
    """NT-6: the past sends of rate-limit buckets."""

    async def send_times(
        self, buckets: Iterable[str], since: datetime
    ) -> dict[str, list[datetime]]:
        """When each bucket's messages were sent (or are being sent) after `since`."""
        ...


class DeliveryReports(Protocol):
    """The operators' read side (OPS-1): state and metadata, never content."""

    async def find(
        self,
        *,
        status: DeliveryStatus | None = None,
        customer_id: str | None = None,
        event_id: UUID | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        """Newest first."""
        ...

    async def get(self, message_key: str) -> DeliveryRecord | None: ...

    async def counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per channel and status."""
        ...


class NotifierUnitOfWork(UnitOfWork, Protocol):
    """Read-only members (as servicekit's), so implementations may narrow them."""

    @property
    def contacts(self) -> ContactRepository: ...

    @property
    def deliveries(self) -> DeliveryRepository: ...

    @property
    def delivery_log(self) -> DeliveryLogRepository: ...

    @property
    def rate_buckets(self) -> RateBucketRepository: ...

    @property
    def reports(self) -> DeliveryReports: ...
