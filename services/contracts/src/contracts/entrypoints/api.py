"""HTTP API of the contracts service: customers' contracts, and upstream systems' intake."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from contracts_schemas import upstream
from contracts_schemas.base import UpstreamMessage
from contracts_schemas.common import PostalAddress
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from pydantic import BaseModel, Field
from servicekit.db import Connection
from servicekit.eventstore import transaction_retrying_conflicts
from servicekit.http import CurrentCustomer, InternalCaller, Problem

from contracts.bootstrap import Service
from contracts.domain import policy as p
from contracts.domain.errors import CommandRejected, ReasonCode, UpstreamRejected
from contracts.domain.views import ContractDetails, ContractSummary
from contracts.domain.visibility import ContractNotVisible

customer = APIRouter(prefix="/contracts", tags=["customers"])
internal = APIRouter(prefix="/internal/upstream", tags=["upstream systems"])

_FORBIDDEN_CODES = {
    ReasonCode.MTAN_REQUIRED,
    ReasonCode.MTAN_NOT_CONFIRMED,
    ReasonCode.MTAN_MISMATCH,
    ReasonCode.MTAN_EXPIRED,
    ReasonCode.NOT_POLICYHOLDER,
}


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


ServiceDep = Annotated[Service, Depends(service)]


class Recorded(BaseModel):
    recorded_event_ids: list[str]
    duplicate: bool


class Visibility(BaseModel):
    policy_number: str
    visible: bool
    reason: str | None = None
    explanation: str | None = None


class BankDetailsChange(BaseModel):
    iban: str = Field(min_length=15, max_length=42)
    mtan_id: str = Field(min_length=1, max_length=100)


class MoveReport(BaseModel):
    new_address: PostalAddress
    moved_on: date


def _customer_problem(error: CommandRejected) -> Problem:
    if isinstance(error, ContractNotVisible):
        status = 404
    elif error.code in _FORBIDDEN_CODES:
        status = 403
    elif error.code is ReasonCode.POLICY_ENDED:
        status = 409
    else:
        status = 422
    return Problem(
        status, error.code.value, error.detail, type_=f"urn:portal:problem:{error.code.value}"
    )


async def _ingest(
    svc: Service, caller: str, message: UpstreamMessage, response: Response
) -> Recorded:
    if message.source_system != caller:
        raise Problem(
            403, "Forbidden", f"credentials of {caller!r} cannot send for {message.source_system!r}"
        )
    try:
        events = await transaction_retrying_conflicts(
            svc.runtime.pool, lambda conn: svc.contracts.ingest(conn, message)
        )
    except UpstreamRejected as rejected:
        raise Problem(
            422, rejected.code.value, rejected.detail,
            type_=f"urn:portal:problem:{rejected.code.value}",
        ) from None  # fmt: skip
    response.status_code = 201 if events else 200
    return Recorded(recorded_event_ids=[str(e.event_id) for e in events], duplicate=not events)


@internal.post("/policies", response_model=Recorded, status_code=201)
async def policy_issued(
    message: upstream.PolicyIssuedUpstream,
    svc: ServiceDep,
    caller: InternalCaller,
    response: Response,
) -> Recorded:
    """CT-1: policy administration issued (or re-issued) a policy."""
    return await _ingest(svc, caller, message, response)


@internal.post("/payments", response_model=Recorded, status_code=201)
async def premium_paid(
    message: upstream.PremiumPaidUpstream,
    svc: ServiceDep,
    caller: InternalCaller,
    response: Response,
) -> Recorded:
    """CT-1: collections received a premium payment."""
    return await _ingest(svc, caller, message, response)


@internal.post("/cancellations", response_model=Recorded, status_code=201)
async def policy_cancelled(
    message: upstream.PolicyCancelledUpstream, svc: ServiceDep, caller: InternalCaller,
    response: Response,
) -> Recorded:  # fmt: skip
    """CT-1: policy administration cancelled a policy."""
    return await _ingest(svc, caller, message, response)


@internal.post("/policyholder-changes", response_model=Recorded, status_code=201)
async def policyholders_changed(
    message: upstream.PolicyholdersChangedUpstream, svc: ServiceDep, caller: InternalCaller,
    response: Response,
) -> Recorded:  # fmt: skip
    """CT-1: the policyholders of a policy changed."""
    return await _ingest(svc, caller, message, response)


@customer.get("", response_model=list[ContractSummary])
async def my_contracts(principal: CurrentCustomer, svc: ServiceDep) -> list[ContractSummary]:
    """CT-3: the contracts the logged-in customer may see."""
    async with svc.runtime.pool.acquire() as conn:
        return await svc.contracts.my_contracts(conn, principal.customer_id)


@customer.get("/visibility", response_model=Visibility)
async def why_not_visible(
    policy_number: str, principal: CurrentCustomer, svc: ServiceDep
) -> Visibility:
    """CT-3: "why don't I see contract X?"."""
    async with svc.runtime.pool.acquire() as conn:
        reason = await svc.contracts.why_not_visible(conn, principal.customer_id, policy_number)
    if reason is None:
        return Visibility(policy_number=policy_number, visible=True)
    return Visibility(
        policy_number=policy_number, visible=False, reason=reason.value,
        explanation=reason.explanation,
    )  # fmt: skip


@customer.get("/{policy_id}", response_model=ContractDetails)
async def contract(policy_id: str, principal: CurrentCustomer, svc: ServiceDep) -> ContractDetails:
    """CT-4: coverage, tariff, add-ons, premium and schedule, bank details."""
    try:
        async with svc.runtime.pool.acquire() as conn:
            return await svc.contracts.contract(conn, principal.customer_id, policy_id)
    except CommandRejected as rejected:
        raise _customer_problem(rejected) from None


@customer.put("/{policy_id}/bank-details", status_code=204)
async def change_bank_details(
    policy_id: str, change: BankDetailsChange, principal: CurrentCustomer, svc: ServiceDep
) -> Response:
    """CT-4/ID-6: a new IBAN, confirmed with an mTAN."""
    now = svc.runtime.clock.now()

    async def work(conn: Connection) -> object:
        return await svc.contracts.change_bank_details(
            conn, principal.customer_id, policy_id, change.iban, change.mtan_id, now
        )

    try:
        await transaction_retrying_conflicts(svc.runtime.pool, work)
    except CommandRejected as rejected:
        raise _customer_problem(rejected) from None
    return Response(status_code=204)


@customer.post("/{policy_id}/moves", status_code=204)
async def report_move(
    policy_id: str,
    move: MoveReport,
    principal: CurrentCustomer,
    svc: ServiceDep,
    idempotency_key: Annotated[str, Header(min_length=8, max_length=100)],
) -> Response:
    """CT-4: report a move; retried with the same Idempotency-Key it has one effect."""
    now = svc.runtime.clock.now()

    async def work(conn: Connection) -> object:
        activated = await svc.contracts.is_activated(conn, principal.customer_id)
        command = p.ReportMove(
            principal.customer_id, activated, policy_id, move.new_address, move.moved_on
        )
        return await svc.contracts.report_move(conn, command, idempotency_key, now)

    try:
        await transaction_retrying_conflicts(svc.runtime.pool, work)
    except CommandRejected as rejected:
        raise _customer_problem(rejected) from None
    return Response(status_code=204)


def register(app: FastAPI) -> None:
    app.include_router(customer)
    app.include_router(internal)
