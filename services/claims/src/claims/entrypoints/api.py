"""The claims service's HTTP API: customer routes under /claims (a customer token; another
customer's claim is a 404), and internal routes under /internal/claims for claims
handling (service credentials, operation `claims`).

Each route parses, makes ONE handler call through `service.transactions.execute`, and
maps the result; a `ClaimsError` (rolled back) is an RFC 9457 problem."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Protocol, TypeVar

import httpx
from contracts_schemas.claims import ClaimStatus, ClaimTransition, ClaimType
from contracts_schemas.common import NotificationChannel
from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from servicekit.asyncapi import document, mount
from servicekit.http import CurrentCustomer, Problem, problems, requires
from servicekit.permissions import Operation
from servicekit.runtime import Runtime
from servicekit.unit_of_work import Transactions

from claims import commands as c
from claims.adapters.postgres import PostgresClaimsUnitOfWork
from claims.config import ClaimsSettings
from claims.domain.errors import ClaimsError, Reason
from claims.domain.lifecycle import STATUS_LABELS, Step, allowed_transitions
from claims.domain.model import NOT_TRACKED_MESSAGES, Attachment, Claim, HistoryEntry
from claims.entrypoints.stream import STREAM
from claims.handlers import ClaimsHandlers

C = TypeVar("C")
R = TypeVar("R")

_STATUS = {
    Reason.NOT_FOUND: 404, Reason.CONTRACT_NOT_FOUND: 404, Reason.WRONG_CLAIM_TYPE: 422,
    Reason.NOT_COVERED: 422, Reason.INVALID: 422, Reason.IDEMPOTENCY_KEY_REUSED: 422,
    Reason.ILLEGAL_TRANSITION: 409, Reason.NOT_TRACKED: 409, Reason.CLAIM_CLOSED: 409,
    Reason.UPLOAD_REFUSED: 422,
}  # fmt: skip
_TITLES = {
    Reason.NOT_FOUND: "Not found", Reason.CONTRACT_NOT_FOUND: "Contract not found",
    Reason.WRONG_CLAIM_TYPE: "Claim type does not fit the contract",
    Reason.NOT_COVERED: "Not covered at that date", Reason.INVALID: "Invalid request",
    Reason.IDEMPOTENCY_KEY_REUSED: "Idempotency-Key reused with another request",
    Reason.ILLEGAL_TRANSITION: "Transition not allowed", Reason.NOT_TRACKED: "Not tracked here",
    Reason.CLAIM_CLOSED: "Claim closed", Reason.UPLOAD_REFUSED: "Upload refused",
}  # fmt: skip


class ClaimsService(Protocol):
    runtime: Runtime
    handlers: ClaimsHandlers
    transactions: Transactions[PostgresClaimsUnitOfWork]
    settings: ClaimsSettings
    http: httpx.AsyncClient


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=2000)


class AttachmentOut(BaseModel):
    attachment_id: str
    filename: str
    content_type: str
    size: int
    document_type: str
    uploaded_at: datetime


class HistoryOut(BaseModel):
    at: datetime
    old_status: ClaimStatus | None
    new_status: ClaimStatus
    status_label: str
    expected_completion_date: date | None
    previous_expected_completion_date: date | None = Field(
        description="Set when the expected date moved later (CL-3: a slip)"
    )
    missing_documents: list[str]
    settled_amount_cents: int | None
    reason: str


class TrackingOut(BaseModel):
    offered: bool = Field(description="CL-3: whether the status can be followed online")
    reason: str | None = Field(description="Why not: life-carrier, travel-health, other-carrier")
    message: str | None = Field(description="For the customer, German")


class ClaimOut(BaseModel):
    claim_id: str
    claim_number: str
    policy_id: str
    policy_number: str
    claim_type: ClaimType
    incident_date: date
    place: str
    description: str
    reported_at: datetime
    notification_channel: NotificationChannel
    attachments: list[AttachmentOut]
    tracking: TrackingOut
    status: ClaimStatus | None = Field(description="None when tracking is not offered")
    status_label: str | None
    expected_completion_date: date | None
    missing_documents: list[str]
    settled_amount_cents: int | None
    history: list[HistoryOut]


class ClaimSummaryOut(BaseModel):
    claim_id: str
    claim_number: str
    claim_type: ClaimType
    policy_number: str
    reported_at: datetime
    tracking_offered: bool
    status: ClaimStatus | None
    status_label: str | None
    expected_completion_date: date | None


class ChannelIn(Body):
    channel: NotificationChannel


class ChannelOut(BaseModel):
    channel: NotificationChannel


class TransitionIn(Body):
    message_id: str = Field(min_length=1, max_length=200, description="Idempotency per system")
    claim_number: str = Field(min_length=1, max_length=100)
    transition: ClaimTransition
    missing_documents: list[str] = Field(default=[], max_length=20)
    amount_cents: int | None = Field(default=None, ge=0)
    reason: str = Field(default="", max_length=2000)


class InternalClaimOut(BaseModel):
    claim_id: str
    claim_number: str
    status: ClaimStatus
    expected_completion_date: date | None
    allowed_transitions: list[ClaimTransition]
    version: int


def _attachment(a: Attachment) -> AttachmentOut:
    return AttachmentOut(
        attachment_id=a.attachment_id, filename=a.filename, content_type=a.content_type,
        size=a.size, document_type=a.document_type, uploaded_at=a.uploaded_at,
    )  # fmt: skip


def _history(h: HistoryEntry) -> HistoryOut:
    return HistoryOut(
        at=h.at, old_status=h.old_status, new_status=h.new_status,
        status_label=STATUS_LABELS[h.new_status],
        expected_completion_date=h.expected_completion_date,
        previous_expected_completion_date=h.previous_expected_completion_date,
        missing_documents=list(h.missing_documents),
        settled_amount_cents=h.settled_amount_cents, reason=h.reason,
    )  # fmt: skip


def claim_out(claim: Claim) -> ClaimOut:
    tracked = claim.trackable
    tracking = TrackingOut(
        offered=tracked,
        reason=claim.not_tracked.value if claim.not_tracked else None,
        message=NOT_TRACKED_MESSAGES[claim.not_tracked] if claim.not_tracked else None,
    )
    return ClaimOut(
        claim_id=claim.claim_id, claim_number=claim.claim_number, policy_id=claim.policy_id,
        policy_number=claim.policy_number, claim_type=claim.claim_type,
        incident_date=claim.incident_date, place=claim.place, description=claim.description,
        reported_at=claim.reported_at, notification_channel=claim.channel,
        attachments=[_attachment(a) for a in claim.attachments], tracking=tracking,
        status=claim.status if tracked else None,
        status_label=STATUS_LABELS[claim.status] if tracked else None,
        expected_completion_date=claim.expected_completion_date,
        missing_documents=list(claim.missing_documents),
        settled_amount_cents=claim.settled_amount_cents,
        history=[_history(h) for h in claim.history] if tracked else [],
    )  # fmt: skip


def _summary(claim: Claim) -> ClaimSummaryOut:
    tracked = claim.trackable
    return ClaimSummaryOut(
        claim_id=claim.claim_id, claim_number=claim.claim_number, claim_type=claim.claim_type,
        policy_number=claim.policy_number, reported_at=claim.reported_at,
        tracking_offered=tracked, status=claim.status if tracked else None,
        status_label=STATUS_LABELS[claim.status] if tracked else None,
        expected_completion_date=claim.expected_completion_date,
    )  # fmt: skip


def _problem(error: ClaimsError) -> Problem:
    return Problem(
        error.status or _STATUS[error.reason], _TITLES[error.reason], error.detail,
        type_=f"urn:portal:problem:claims-{error.reason.value}", extensions=error.extensions,
    )  # fmt: skip


async def _read(upload: UploadFile, limit: int) -> c.File:
    """At most one byte more than allowed is read: enough to refuse, never the whole file."""
    content = await upload.read(limit + 1)
    return c.File(upload.filename, content, upload.content_type)


def create_app(service: ClaimsService) -> FastAPI:
    def register(app: FastAPI) -> None:
        _routes(app, service)
        mount(app, document(STREAM))  # /asyncapi and /asyncapi.json

    return service.runtime.http_app(service, register, customer_tokens=service.http)


def _routes(app: FastAPI, service: ClaimsService) -> None:
    handlers = service.handlers
    limit = service.settings.max_upload_bytes

    async def execute(
        handler: Callable[[C, PostgresClaimsUnitOfWork], Awaitable[R]], command: C
    ) -> R:
        try:
            return await service.transactions.execute(handler, command)
        except ClaimsError as error:
            raise _problem(error) from None

    customer = APIRouter(prefix="/claims", tags=["claims"])

    @customer.post(
        "", status_code=201, response_model=ClaimOut, responses=problems(404, 409, 413, 415),
        summary="Report a claim (CL-1) or submit a health benefit case (CL-2)",
    )  # fmt: skip
    async def report(
        principal: CurrentCustomer,
        policy_id: Annotated[str, Form(min_length=1, max_length=100)],
        claim_type: Annotated[ClaimType, Form()],
        incident_date: Annotated[date, Form(description="Date of the incident or treatment")],
        place: Annotated[str, Form(max_length=500)] = "",
        description: Annotated[str, Form(max_length=5000)] = "",
        notification_channel: Annotated[NotificationChannel | None, Form()] = None,
        document_types: Annotated[list[str], Form(max_length=100)] = [],  # noqa: B006
        attachments: Annotated[list[UploadFile], File()] = [],  # noqa: B006
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> ClaimOut:
        files = tuple([await _read(f, limit) for f in attachments])
        claim = await execute(handlers.report, c.ReportClaim(
            customer_id=principal.customer_id, policy_id=policy_id, claim_type=claim_type,
            incident_date=incident_date, place=place, description=description, files=files,
            document_types=tuple(document_types), notification_channel=notification_channel,
            idempotency_key=idempotency_key,
        ))  # fmt: skip
        return claim_out(claim)

    @customer.get("", response_model=list[ClaimSummaryOut])
    async def list_claims(principal: CurrentCustomer) -> list[ClaimSummaryOut]:
        claims = await execute(handlers.list_claims, c.ListClaims(principal.customer_id))
        return [_summary(claim) for claim in claims]

    @customer.get("/notification-channel", response_model=ChannelOut)
    async def default_channel(principal: CurrentCustomer) -> ChannelOut:
        """CL-5: the default channel for claim updates."""
        chosen = await execute(
            handlers.default_channel, c.ShowDefaultChannel(principal.customer_id)
        )
        return ChannelOut(channel=chosen)

    @customer.put("/notification-channel", response_model=ChannelOut)
    async def choose_default_channel(principal: CurrentCustomer, body: ChannelIn) -> ChannelOut:
        """CL-5: SMS or e-mail for new claims and open claims without their own choice."""
        command = c.ChooseDefaultChannel(principal.customer_id, body.channel)
        chosen = await execute(handlers.choose_default_channel, command)
        return ChannelOut(channel=chosen)

    @customer.get("/{claim_id}", response_model=ClaimOut, responses=problems(404))
    async def show(principal: CurrentCustomer, claim_id: str) -> ClaimOut:
        """CL-3: status, history and expected completion date - or, where tracking is not
        offered, a plain statement saying so."""
        return claim_out(await execute(handlers.show, c.ShowClaim(principal.customer_id, claim_id)))

    @customer.post(
        "/{claim_id}/documents", status_code=201, response_model=ClaimOut,
        responses=problems(404, 409, 413, 415),
    )  # fmt: skip
    async def upload(
        principal: CurrentCustomer,
        claim_id: str,
        file: Annotated[UploadFile, File()],
        document_type: Annotated[str, Form(max_length=100)] = "",
    ) -> ClaimOut:
        """A document for the claim; a claim waiting for the customer goes back into review."""
        command = c.UploadDocument(principal.customer_id, claim_id, await _read(file, limit),
                                   document_type)  # fmt: skip
        return claim_out(await execute(handlers.upload, command))

    @customer.get(
        "/{claim_id}/attachments/{attachment_id}", responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The file"},
            **problems(404),
        },
    )  # fmt: skip
    async def download(principal: CurrentCustomer, claim_id: str, attachment_id: str) -> Response:
        found = await execute(handlers.download, c.DownloadAttachment(
            principal.customer_id, claim_id, attachment_id))  # fmt: skip
        return Response(
            found.blob.content, media_type=found.attachment.content_type,
            headers={"Content-Disposition": f'attachment; filename="{found.attachment.filename}"',
                     "X-Content-Type-Options": "nosniff"},
        )  # fmt: skip

    @customer.put(
        "/{claim_id}/notification-channel", response_model=ChannelOut, responses=problems(404)
    )
    async def choose_channel(
        principal: CurrentCustomer, claim_id: str, body: ChannelIn
    ) -> ChannelOut:
        """CL-5: SMS or e-mail for this claim."""
        command = c.ChooseChannel(principal.customer_id, claim_id, body.channel)
        claim = await execute(handlers.choose_channel, command)
        return ChannelOut(channel=claim.channel)

    internal = APIRouter(prefix="/internal/claims", tags=["claims handling"])

    @internal.post("/transitions", response_model=InternalClaimOut, responses=problems(404, 409))
    async def move(
        system: Annotated[str, Depends(requires(Operation.CLAIMS))], body: TransitionIn
    ) -> InternalClaimOut:
        """CL-4: claims handling moves a claim; the same `message_id` again has no second
        effect. Emits ClaimStatusChanged."""
        step = Step(body.transition, tuple(body.missing_documents), body.amount_cents,
                    body.reason)  # fmt: skip
        claim = await execute(handlers.move, c.MoveClaim(system, body.message_id,
                                                         body.claim_number, step))  # fmt: skip
        return InternalClaimOut(
            claim_id=claim.claim_id, claim_number=claim.claim_number, status=claim.status,
            expected_completion_date=claim.expected_completion_date,
            allowed_transitions=allowed_transitions(claim.status), version=claim.version,
        )  # fmt: skip

    app.include_router(customer)
    app.include_router(internal)
