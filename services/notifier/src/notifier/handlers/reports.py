"""The operators' reads (OPS-1): deliveries, one delivery with its log, counts. Never
message content: state, times, the provider reference, the error classification and a
masked recipient."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from notifier.domain.delivery import DeliveryStatus
from notifier.handlers.dispatch import UnknownDelivery
from notifier.unit_of_work import DeliveryRecord, LogEntry, NotifierUnitOfWork


@dataclass(frozen=True, slots=True)
class FindDeliveries:
    status: DeliveryStatus | None = None
    customer_id: str | None = None
    event_id: UUID | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class DeliveryWithLog:
    record: DeliveryRecord
    log: list[LogEntry]


async def find_deliveries(query: FindDeliveries, uow: NotifierUnitOfWork) -> list[DeliveryRecord]:
    """Newest first, by status, customer and/or triggering event."""
    return await uow.reports.find(
        status=query.status, customer_id=query.customer_id, event_id=query.event_id,
        limit=query.limit,
    )  # fmt: skip


async def delivery_with_log(message_key: str, uow: NotifierUnitOfWork) -> DeliveryWithLog:
    """One delivery and every transition it went through; `UnknownDelivery` otherwise."""
    record = await uow.reports.get(message_key)
    if record is None:
        raise UnknownDelivery(message_key)
    return DeliveryWithLog(record, await uow.delivery_log.of(message_key))


async def delivery_counts(_: None, uow: NotifierUnitOfWork) -> dict[str, dict[str, int]]:
    """Deliveries per channel and status (dashboard: sent, failed, dead letters)."""
    return await uow.reports.counts()
