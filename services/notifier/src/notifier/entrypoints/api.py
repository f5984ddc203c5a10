"""Operator API of the notifier (OPS-1): deliveries, their log, dead letters and replay.

Internal systems only, by operation (OWASP API5): reading deliveries, their log, the dead
letters and the counts needs `deliveries`, a replay needs `replays` (by default both are
the operators'; `PORTAL_SYSTEM_OPERATIONS`). There is no customer API. Nothing here
returns message content: operators see state, timestamps, the provider's reference, the
error classification and a masked recipient. Each route makes one handler call in one
transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel
from servicekit.asyncapi import document, mount
from servicekit.http import Problem, problems, requires
from servicekit.permissions import Operation, SystemPermissions

from notifier.bootstrap import Service
from notifier.domain.delivery import DeliveryStatus
from notifier.entrypoints.stream import STREAM
from notifier.handlers import reports
from notifier.handlers.dispatch import NotReplayable, ReplayDelivery, UnknownDelivery
from notifier.unit_of_work import DeliveryRecord, LogEntry

operators = APIRouter(prefix="/internal/notifier", tags=["operators"])


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


ServiceDep = Annotated[Service, Depends(service)]
ReadsDeliveries = Annotated[str, Depends(requires(Operation.DELIVERIES))]
Replays = Annotated[str, Depends(requires(Operation.REPLAYS))]
Limit = Annotated[int, Query(ge=1, le=1000)]
# Identifiers as the platform writes them: printable, bounded (a NUL byte would otherwise
# reach PostgreSQL, which refuses it).
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
CustomerId = Annotated[str | None, Query(min_length=1, max_length=200, pattern=_PRINTABLE)]
MessageKey = Annotated[str, Path(min_length=1, max_length=64, pattern=_PRINTABLE)]


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
    caller: ReadsDeliveries,
    status: DeliveryStatus | None = None,
    customer_id: CustomerId = None,
    event_id: UUID | None = None,
    limit: Limit = 100,
) -> list[DeliveryView]:
    """Deliveries, newest first, by status, customer and/or triggering event."""
    query = reports.FindDeliveries(status, customer_id, event_id, limit)
    records = await svc.transactions.execute(reports.find_deliveries, query)
    return [DeliveryView.of(r) for r in records]


@operators.get("/dead-letters", response_model=list[DeliveryView])
async def dead_letters(
    svc: ServiceDep, caller: ReadsDeliveries, customer_id: CustomerId = None, limit: Limit = 100
) -> list[DeliveryView]:
    """NT-4: deliveries that gave up (permanent error or attempts exhausted)."""
    query = reports.FindDeliveries(DeliveryStatus.DEAD, customer_id, None, limit)
    records = await svc.transactions.execute(reports.find_deliveries, query)
    return [DeliveryView.of(r) for r in records]


@operators.get("/deliveries/{message_key}", response_model=DeliveryWithLog, responses=problems(404))
async def get_delivery(
    message_key: MessageKey, svc: ServiceDep, caller: ReadsDeliveries
) -> DeliveryWithLog:
    """One delivery with its log (queued, sending, sent, failed, dead, ...)."""
    try:
        found = await svc.transactions.execute(reports.delivery_with_log, message_key)
    except UnknownDelivery:
        raise _not_found(message_key) from None
    view = DeliveryView.of(found.record)
    return DeliveryWithLog(**view.model_dump(), log=[LogEntryView.of(e) for e in found.log])


@operators.get(
    "/deliveries/{message_key}/log", response_model=list[LogEntryView], responses=problems(404)
)
async def delivery_log(
    message_key: MessageKey, svc: ServiceDep, caller: ReadsDeliveries
) -> list[LogEntryView]:
    """What happened to one message, oldest first."""
    try:
        found = await svc.transactions.execute(reports.delivery_with_log, message_key)
    except UnknownDelivery:
        raise _not_found(message_key) from None
    return [LogEntryView.of(e) for e in found.log]


@operators.post(
    "/deliveries/{message_key}/replay", response_model=DeliveryView, responses=problems(404, 409)
)
async def replay(message_key: MessageKey, svc: ServiceDep, caller: Replays) -> DeliveryView:
    """A dead letter back to the queue with a fresh attempt budget (same message key, so
    the provider still recognises it; an expired code expires instead of being sent)."""
    try:
        record = await svc.transactions.execute(
            svc.dispatch.replay, ReplayDelivery(message_key, caller)
        )
    except UnknownDelivery:
        raise _not_found(message_key) from None
    except NotReplayable as refusal:
        raise Problem(
            409, "not_replayable", str(refusal), type_="urn:portal:problem:not_replayable"
        ) from None
    return DeliveryView.of(record)


@operators.get("/stats")
async def stats(svc: ServiceDep, caller: ReadsDeliveries) -> dict[str, dict[str, int]]:
    """Deliveries per channel and status (dashboard: sent, failed, dead letters)."""
    return await svc.transactions.execute(reports.delivery_counts, None)


def _register(app: FastAPI) -> None:
    # The routes themselves, not `include_router`: FastAPI 0.165 includes a router as one
    # lazy `_IncludedRouter` entry, which servicekit.http's OpenAPI problem documentation
    # (401/403/422/500 per operation) does not look into.
    app.router.routes.extend(operators.routes)


def create_app(service: Service) -> FastAPI:
    """Operators only (service credentials): the notifier has no customer-facing API, so it
    needs no token verifier (and no PORTAL_JWKS)."""
    app = service.runtime.http_app(service, _register)
    app.state.system_permissions = SystemPermissions(service.settings.system_operations)
    mount(app, document(STREAM))  # /asyncapi and /asyncapi.json: what it consumes
    return app
