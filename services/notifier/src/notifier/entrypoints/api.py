"""Operator API of the notifier (OPS-1): deliveries, their log, dead letters and replay.

Service credentials only (`servicekit.http.InternalCaller`); there is no customer API.
Nothing here returns message content: operators see state, timestamps, the provider's
reference, the error classification and a masked recipient.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel
from servicekit.http import InternalCaller, Problem

from notifier.adapters.store import DeliveryRecord, LogEntry
from notifier.bootstrap import Service
from notifier.domain.delivery import DeliveryStatus
from notifier.handlers import NotReplayable

operators = APIRouter(prefix="/internal/notifier", tags=["operators"])


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


ServiceDep = Annotated[Service, Depends(service)]


class DeliveryView(BaseModel):
    message_key: str
    customer_id: str
    kind: str
    channel: str
    recipient: str
    event_id: UUID
    event_type: str
    status: DeliveryStatus
    attempts: int
    replays: int
    next_attempt_at: datetime | None
    not_after: datetime | None
    attempted_at: datetime | None
    provider_ref: str | None
    last_error: str | None
    replayable: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: DeliveryRecord) -> DeliveryView:
        d = record.delivery
        return cls(
            message_key=d.message_key,
            customer_id=record.customer_id,
            kind=record.kind.value,
            channel=record.channel.value,
            recipient=record.recipient,
            event_id=record.event_id,
            event_type=record.event_type,
            status=d.status,
            attempts=d.attempts,
            replays=d.replays,
            next_attempt_at=d.next_attempt_at,
            not_after=d.not_after,
            attempted_at=record.attempted_at,
            provider_ref=d.provider_ref,
            last_error=d.last_error,
            replayable=d.status is DeliveryStatus.DEAD and record.has_text,
            created_at=record.created_at,
            updated_at=d.updated_at,
        )


class LogEntryView(BaseModel):
    status: str
    at: datetime
    attempt: int
    detail: str | None

    @classmethod
    def of(cls, entry: LogEntry) -> LogEntryView:
        return cls(status=entry.status, at=entry.at, attempt=entry.attempt, detail=entry.detail)


class DeliveryWithLog(DeliveryView):
    log: list[LogEntryView]


def _not_found(message_key: str) -> Problem:
    return Problem(404, "unknown_delivery", f"no delivery with key {message_key}")


@operators.get("/deliveries", response_model=list[DeliveryView])
async def list_deliveries(
    svc: ServiceDep,
    caller: InternalCaller,
    status: DeliveryStatus | None = None,
    customer_id: str | None = None,
    event_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryView]:
    """Deliveries, newest first, by status, customer and/or triggering event."""
    async with svc.runtime.pool.acquire() as conn:
        records = await svc.notifier.deliveries(
            conn, status=status, customer_id=customer_id, event_id=event_id, limit=limit
        )
    return [DeliveryView.of(r) for r in records]


@operators.get("/dead-letters", response_model=list[DeliveryView])
async def dead_letters(
    svc: ServiceDep,
    caller: InternalCaller,
    customer_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryView]:
    """NT-4: deliveries that gave up (permanent error or attempts exhausted)."""
    async with svc.runtime.pool.acquire() as conn:
        records = await svc.notifier.deliveries(
            conn, status=DeliveryStatus.DEAD, customer_id=customer_id, limit=limit
        )
    return [DeliveryView.of(r) for r in records]


@operators.get("/deliveries/{message_key}", response_model=DeliveryWithLog)
async def get_delivery(
    message_key: str, svc: ServiceDep, caller: InternalCaller
) -> DeliveryWithLog:
    """One delivery with its log (queued, sending, sent, failed, dead, ...)."""
    async with svc.runtime.pool.acquire() as conn:
        record = await svc.notifier.delivery(conn, message_key)
        entries = await svc.notifier.delivery_log(conn, message_key)
    if record is None:
        raise _not_found(message_key)
    view = DeliveryView.of(record)
    return DeliveryWithLog(**view.model_dump(), log=[LogEntryView.of(e) for e in entries])


@operators.get("/deliveries/{message_key}/log", response_model=list[LogEntryView])
async def delivery_log(
    message_key: str, svc: ServiceDep, caller: InternalCaller
) -> list[LogEntryView]:
    async with svc.runtime.pool.acquire() as conn:
        entries = await svc.notifier.delivery_log(conn, message_key)
    if not entries:
        raise _not_found(message_key)
    return [LogEntryView.of(e) for e in entries]


@operators.post("/deliveries/{message_key}/replay", response_model=DeliveryView)
async def replay(message_key: str, svc: ServiceDep, caller: InternalCaller) -> DeliveryView:
    """A dead letter back to the queue with a fresh attempt budget (same message key, so
    the provider still recognises it; an expired code expires instead of being sent)."""
    try:
        replayed = await svc.notifier.replay(svc.runtime.pool, message_key, caller)
    except NotReplayable as refusal:
        raise Problem(
            409, "not_replayable", str(refusal), type_="urn:portal:problem:not_replayable"
        ) from None
    if replayed is None:
        raise _not_found(message_key)
    async with svc.runtime.pool.acquire() as conn:
        record = await svc.notifier.delivery(conn, message_key)
    assert record is not None
    return DeliveryView.of(record)


@operators.get("/stats")
async def stats(svc: ServiceDep, caller: InternalCaller) -> dict[str, dict[str, int]]:
    """Deliveries per channel and status (dashboard: sent, failed, dead letters)."""
    async with svc.runtime.pool.acquire() as conn:
        return await svc.notifier.counts(conn)


def register(app: FastAPI) -> None:
    app.include_router(operators)
