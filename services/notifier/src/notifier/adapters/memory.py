"""In-memory twins of the notifier's repositories, for unit tests of handlers (never for
integration tests). They keep the promises of the PostgreSQL ones (`unit_of_work.py`):
one row per message key, the fenced result, claims that hand a row out once per
transaction (one transaction at a time here, so nothing is ever skipped), log entries
written with every transition, code messages scrubbed once final."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from servicekit.memory import InMemoryUnitOfWork

from notifier.domain.contacts import ContactView
from notifier.domain.delivery import Delivery, DeliveryStatus, needs_scrub
from notifier.domain.dispatch import Claimed, Step
from notifier.domain.messages import OutgoingMessage, RenderedMessage, masked_recipient
from notifier.unit_of_work import (
    AttemptId,
    AttemptResult,
    ClaimedRow,
    DeliveryRecord,
    LogEntry,
    NewDelivery,
    Replayable,
)


class InMemoryContacts:
    def __init__(self) -> None:
        #: customer id -> view (None: a lock placeholder, nothing folded yet)
        self.views: dict[str, ContactView | None] = {}

    async def lock(
        self, customer_ids: Iterable[str], now: datetime
    ) -> dict[str, ContactView | None]:
        for customer_id in customer_ids:
            self.views.setdefault(customer_id, None)
        return {c: self.views[c] for c in sorted(set(customer_ids))}

    async def read(self, customer_ids: Iterable[str]) -> dict[str, ContactView]:
        return {c: view for c in set(customer_ids) if (view := self.views.get(c)) is not None}

    async def save(self, views: Sequence[ContactView], now: datetime) -> None:
        for view in views:
            self.views[view.customer_id] = view


@dataclass
class StoredDelivery:
    message: OutgoingMessage
    delivery: Delivery
    rate_bucket: str
    rendered: RenderedMessage | None
    created_at: datetime
    attempted_at: datetime | None = None

    def scrub(self) -> None:
        self.rendered = None
        self.message = self.message.model_copy(update={"context": {}})


class InMemoryDeliveryLog:
    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    async def append(self, entries: Sequence[LogEntry]) -> None:
        self.entries.extend(entries)

    async def of(self, message_key: str) -> list[LogEntry]:
        return [e for e in self.entries if e.message_key == message_key]


class InMemoryDeliveries:
    def __init__(self, log: InMemoryDeliveryLog) -> None:
        self.rows: dict[str, StoredDelivery] = {}
        self._log = log
        #: The rate-limit buckets claims locked (one process: nothing to serialise).
        self.locked_buckets: list[str] = []

    async def add(
        self, new: Sequence[NewDelivery], now: datetime
    ) -> list[tuple[str, DeliveryStatus]]:
        inserted: list[tuple[str, DeliveryStatus]] = []
        for n in new:
            key = n.message.message_key
            if key in self.rows:
                continue
            self.rows[key] = StoredDelivery(n.message, n.delivery, n.rate_bucket, n.rendered, now)
            self._log.entries.append(
                LogEntry(key, n.delivery.status.value, now, 0, n.delivery.last_error)
            )
            inserted.append((key, n.delivery.status))
        return inserted

    async def claim_due(
        self, now: datetime, limit: int, *, lock_buckets: bool = False
    ) -> list[ClaimedRow]:
        def due(row: StoredDelivery) -> bool:
            d = row.delivery
            if d.status in (DeliveryStatus.QUEUED, DeliveryStatus.FAILED):
                return _at_or_before(d.next_attempt_at, now) or _at_or_before(d.not_after, now)
            return d.status is DeliveryStatus.SENDING and _at_or_before(d.lease_until, now)

        def order(row: StoredDelivery) -> tuple[bool, datetime, str]:
            at = row.delivery.next_attempt_at or row.delivery.lease_until
            return (at is None, at or now, row.delivery.message_key)  # NULLS LAST, as SQL

        claimed = sorted((r for r in self.rows.values() if due(r)), key=order)[:limit]
        if lock_buckets:
            waiting = DeliveryStatus.QUEUED, DeliveryStatus.FAILED
            self.locked_buckets += sorted(
                {r.rate_bucket for r in claimed if r.delivery.status in waiting}
            )
        return [ClaimedRow(Claimed(r.delivery, r.message), r.rendered) for r in claimed]

    async def apply_steps(self, steps: Sequence[Step], now: datetime) -> None:
        for step in steps:
            row = self.rows[step.after.message_key]
            row.delivery = step.after
            if step.send:
                row.attempted_at = now
            if needs_scrub(step.message, step.after.status):
                row.scrub()
            self._log.entries.append(
                LogEntry(step.after.message_key, step.log, now, step.after.attempts, step.detail)
            )

    async def record_results(self, results: Sequence[AttemptResult]) -> set[AttemptId]:
        return {
            r.attempt
            for r in results
            if self._record_result(r.before, r.after, r.message, r.detail)
        }

    def _record_result(
        self, before: Delivery, after: Delivery, message: OutgoingMessage, detail: str | None
    ) -> bool:
        row = self.rows.get(before.message_key)
        if row is None:
            return False
        current = row.delivery
        if (current.status, current.attempts, current.replays) != (
            DeliveryStatus.SENDING,
            before.attempts,
            before.replays,
        ):
            return False
        row.delivery = replace(
            current,
            status=after.status,
            next_attempt_at=after.next_attempt_at,
            lease_until=None,
            last_error=after.last_error,
            provider_ref=after.provider_ref or current.provider_ref,
            updated_at=after.updated_at,
        )
        if needs_scrub(message, after.status):
            row.scrub()
        self._log.entries.append(
            LogEntry(
                before.message_key, after.status.value, after.updated_at, current.attempts, detail
            )
        )
        return True

    async def for_replay(self, message_key: str) -> Replayable | None:
        row = self.rows.get(message_key)
        return None if row is None else Replayable(row.delivery, row.rendered is not None)

    async def requeue(self, after: Delivery, detail: str, now: datetime) -> None:
        row = self.rows[after.message_key]
        row.delivery = replace(
            row.delivery,
            status=after.status,
            attempts=after.attempts,
            next_attempt_at=after.next_attempt_at,
            replays=after.replays,
            lease_until=None,
            updated_at=after.updated_at,
        )
        self._log.entries.append(LogEntry(after.message_key, after.status.value, now, 0, detail))


class InMemoryRateBuckets:
    def __init__(self, deliveries: InMemoryDeliveries) -> None:
        self._deliveries = deliveries

    async def send_times(
        self, buckets: Iterable[str], since: datetime
    ) -> dict[str, list[datetime]]:
        wanted = set(buckets)
        times: dict[str, list[datetime]] = defaultdict(list)
        for row in self._deliveries.rows.values():
            if (
                row.rate_bucket in wanted
                and row.delivery.status in (DeliveryStatus.SENT, DeliveryStatus.SENDING)
                and row.attempted_at is not None
                and row.attempted_at > since
            ):
                times[row.rate_bucket].append(row.attempted_at)
        return dict(times)


class InMemoryDeliveryReports:
    def __init__(self, deliveries: InMemoryDeliveries) -> None:
        self._deliveries = deliveries

    async def find(
        self,
        *,
        status: DeliveryStatus | None = None,
        customer_id: str | None = None,
        event_id: UUID | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        rows = [
            r
            for r in self._deliveries.rows.values()
            if (status is None or r.delivery.status is status)
            and (customer_id is None or r.message.customer_id == customer_id)
            and (event_id is None or r.message.event_id == event_id)
        ]
        rows.sort(key=lambda r: r.delivery.message_key)
        rows.sort(key=lambda r: r.created_at, reverse=True)
        return [_record(r) for r in rows[:limit]]

    async def get(self, message_key: str) -> DeliveryRecord | None:
        row = self._deliveries.rows.get(message_key)
        return None if row is None else _record(row)

    async def counts(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = defaultdict(dict)
        for row in self._deliveries.rows.values():
            by_status = result[row.message.channel.value]
            status = row.delivery.status.value
            by_status[status] = by_status.get(status, 0) + 1
        return dict(result)


def _record(row: StoredDelivery) -> DeliveryRecord:
    message = row.message
    return DeliveryRecord(
        delivery=row.delivery,
        customer_id=message.customer_id,
        kind=message.kind,
        channel=message.channel,
        recipient=masked_recipient(message.channel, message.recipient),
        event_id=message.event_id,
        event_type=message.event_type,
        attempted_at=row.attempted_at,
        created_at=row.created_at,
        has_text=row.rendered is not None,
    )


def _at_or_before(at: datetime | None, now: datetime) -> bool:
    return at is not None and at <= now


class InMemoryNotifierUnitOfWork(InMemoryUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        log = InMemoryDeliveryLog()
        deliveries = InMemoryDeliveries(log)
        self.contacts = InMemoryContacts()
        self.delivery_log = log
        self.deliveries = deliveries
        self.rate_buckets = InMemoryRateBuckets(deliveries)
        self.reports = InMemoryDeliveryReports(deliveries)
