"""HTTP API of the contracts service: customers' contracts, and upstream systems' intake.

Each route parses, makes ONE handler call in a transaction of its own
(`service.transactions.execute`) and maps the result or the refusal to HTTP. No route
answers 500 for anything a request can cause: refusals, reused keys, values the
database refuses and conflicts that outlast the retries are problems (4xx).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, TypeVar

from contracts_schemas import upstream
from contracts_schemas.base import NO_CONTROL_CHARACTERS
from contracts_schemas.common import PostalAddress
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field
from servicekit.asyncapi import document, mount
from servicekit.http import CurrentCustomer, Problem, problems, requires
from servicekit.permissions import Operation
from servicekit.unit_of_work import Conflict, Unstorable

from contracts.bootstrap import Service
from contracts.domain.errors import CommandRejected, DomainError, ReasonCode, UpstreamRejected
from contracts.domain.mtan import MtanRefused, MtanUnavailable
from contracts.domain.views import ContractDetails, ContractSummary
from contracts.domain.visibility import ContractNotVisible
from contracts.entrypoints.stream import STREAM
from contracts.handlers import (
    ChangeBankDetails,
    ContractOf,
    Recorded,
    ReportMove,
    RequestBankDetailsMtan,
    UpstreamInput,
    WhyNotVisible,
)
from contracts.unit_of_work import ContractsUnitOfWork

C = TypeVar("C")
T = TypeVar("T")

customer = APIRouter(prefix="/contracts", tags=["customers"])
internal = APIRouter(prefix="/internal/upstream", tags=["upstream systems"])

_FORBIDDEN_CODES = {
    ReasonCode.MTAN_REQUIRED,
    ReasonCode.MTAN_NOT_CONFIRMED,
    ReasonCode.MTAN_MISMATCH,
    ReasonCode.MTAN_EXPIRED,
    ReasonCode.NOT_POLICYHOLDER,
}

PolicyId = Annotated[str, Path(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)]
PolicyNumber = Annotated[str, Query(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)]
IdempotencyKey = Annotated[str, Header(min_length=8, max_length=100, pattern=r"^[\x21-\x7e]+$")]


def _service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


ServiceDep = Annotated[Service, Depends(_service)]
# OWASP API5: policy administration owns policies, cancellations and policyholders;
# collections owns payments (grants per environment: PORTAL_SYSTEM_OPERATIONS).
PolicyAdministration = Annotated[str, Depends(requires(Operation.POLICIES))]
Collections = Annotated[str, Depends(requires(Operation.PAYMENTS))]


class RecordedAnswer(BaseModel):
    recorded_event_ids: list[str] = Field(
        description="The events the message recorded (for a replay: those of its first delivery)"
    )
    duplicate: bool = Field(description="Nothing new was recorded")


class Visibility(BaseModel):
    policy_number: str
    visible: bool
    reason: str | None = None
    explanation: str | None = None


class BankDetailsChange(BaseModel):
    iban: str = Field(min_length=15, max_length=42, pattern=NO_CONTROL_CHARACTERS)
    mtan_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)


class BankDetailsMtanRequest(BaseModel):
    iban: str = Field(min_length=15, max_length=42, pattern=NO_CONTROL_CHARACTERS)


class MtanSent(BaseModel):
    mtan_id: str = Field(description="Confirm it at identity, then send the change with it")
    purpose: str
    expires_at: str
    confirm_path: str = Field(description="identity's route where the customer types the code")


class MoveReport(BaseModel):
    new_address: PostalAddress
    moved_on: date


def _problem(error: DomainError, status: int) -> Problem:
    return Problem(
        status, error.code.value, error.detail, type_=f"urn:portal:problem:{error.code.value}"
    )


def _customer_problem(error: CommandRejected) -> Problem:
    if isinstance(error, ContractNotVisible):
        return _problem(error, 404)
    if error.code in _FORBIDDEN_CODES:
        return _problem(error, 403)
    if error.code is ReasonCode.POLICY_ENDED:
        return _problem(error, 409)
    return _problem(error, 422)


async def _execute(
    svc: Service, handler: Callable[[C, ContractsUnitOfWork], Awaitable[T]], command: C
) -> T:
    """One handler call in its own transaction; what a request can cause becomes a 4xx."""
    try:
        return await svc.transactions.execute(handler, command)
    except UpstreamRejected as rejected:
        raise _problem(rejected, 422) from None
    except CommandRejected as rejected:
        raise _customer_problem(rejected) from None
    except Unstorable as refused:
        raise Problem(
            422, "unstorable", f"the database refuses a value: {refused.reason}",
            type_="urn:portal:problem:unstorable",
        ) from None  # fmt: skip
    except MtanRefused as refused:
        extensions: dict[str, Any] = {"reason": refused.reason}
        if refused.retry_after is not None:
            extensions["retry_after"] = refused.retry_after
        raise Problem(
            refused.status, refused.reason, refused.detail or None,
            type_=f"urn:portal:problem:{refused.reason}", extensions=extensions,
        ) from None  # fmt: skip
    except MtanUnavailable:
        raise Problem(
            503, "mtan_unavailable",
            "Die Bestätigung per mTAN ist gerade nicht möglich. Bitte versuchen Sie es in"
            " einigen Minuten erneut.",
            type_="urn:portal:problem:mtan-unavailable",
        ) from None  # fmt: skip
    except Conflict:
        raise Problem(
            409, "concurrent_change",
            "Der Vertrag wurde gerade gleichzeitig geändert. Bitte versuchen Sie es erneut.",
            type_="urn:portal:problem:concurrent-change",
        ) from None  # fmt: skip


# --------------------------------------------------------------------------- upstream

_INTAKE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": RecordedAnswer,
        "description": "The same message again (a replay), or one without a new effect",
    },
    **problems(403, 409, 422),
}


async def _ingest(
    svc: Service, caller: str, message: UpstreamInput, response: Response
) -> RecordedAnswer:
    if message.source_system != caller:
        raise Problem(
            403, "Forbidden",
            f"credentials of {caller!r} cannot send for {message.source_system!r}",
            type_="urn:portal:problem:forbidden-source-system",
        )  # fmt: skip
    recorded: Recorded = await _execute(svc, svc.contracts.ingest, message)
    response.status_code = 200 if recorded.duplicate else 201
    return RecordedAnswer(
        recorded_event_ids=[str(i) for i in recorded.event_ids], duplicate=recorded.duplicate
    )


@internal.post(
    "/policies", response_model=RecordedAnswer, status_code=201, responses=_INTAKE_RESPONSES
)
async def policy_issued(
    message: upstream.PolicyIssuedUpstream, svc: ServiceDep, caller: PolicyAdministration,
    response: Response,
) -> RecordedAnswer:  # fmt: skip
    """CT-1: policy administration issued (or re-issued) a policy."""
    return await _ingest(svc, caller, message, response)


@internal.post(
    "/payments", response_model=RecordedAnswer, status_code=201, responses=_INTAKE_RESPONSES
)
async def premium_paid(
    message: upstream.PremiumPaidUpstream, svc: ServiceDep, caller: Collections,
    response: Response,
) -> RecordedAnswer:  # fmt: skip
    """CT-1: collections received a premium payment."""
    return await _ingest(svc, caller, message, response)


@internal.post(
    "/cancellations", response_model=RecordedAnswer, status_code=201, responses=_INTAKE_RESPONSES
)
async def policy_cancelled(
    message: upstream.PolicyCancelledUpstream, svc: ServiceDep, caller: PolicyAdministration,
    response: Response,
) -> RecordedAnswer:  # fmt: skip
    """CT-1: policy administration cancelled a policy."""
    return await _ingest(svc, caller, message, response)


@internal.post(
    "/policyholder-changes",
    response_model=RecordedAnswer,
    status_code=201,
    responses=_INTAKE_RESPONSES,
)
async def policyholders_changed(
    message: upstream.PolicyholdersChangedUpstream, svc: ServiceDep, caller: PolicyAdministration,
    response: Response,
) -> RecordedAnswer:  # fmt: skip
    """CT-1: the policyholders of a policy changed."""
    return await _ingest(svc, caller, message, response)


# --------------------------------------------------------------------------- customers


@customer.get("", response_model=list[ContractSummary])
async def my_contracts(principal: CurrentCustomer, svc: ServiceDep) -> list[ContractSummary]:
    """CT-3: the contracts the logged-in customer may see."""
    return await _execute(svc, svc.contracts.my_contracts, principal.customer_id)


@customer.get("/visibility", response_model=Visibility)
async def why_not_visible(
    policy_number: PolicyNumber, principal: CurrentCustomer, svc: ServiceDep
) -> Visibility:
    """CT-3: "why don't I see contract X?"."""
    query = WhyNotVisible(principal.customer_id, policy_number)
    reason = await _execute(svc, svc.contracts.why_not_visible, query)
    if reason is None:
        return Visibility(policy_number=policy_number, visible=True)
    return Visibility(
        policy_number=policy_number, visible=False, reason=reason.value,
        explanation=reason.explanation,
    )  # fmt: skip


@customer.get("/{policy_id}", response_model=ContractDetails, responses=problems(404))
async def contract(
    policy_id: PolicyId, principal: CurrentCustomer, svc: ServiceDep
) -> ContractDetails:
    """CT-4: coverage, tariff, add-ons, premium and schedule, bank details."""
    return await _execute(svc, svc.contracts.contract, ContractOf(principal.customer_id, policy_id))


@customer.post(
    "/{policy_id}/bank-details/mtan",
    status_code=201,
    response_model=MtanSent,
    responses=problems(401, 403, 404, 409, 422, 423, 429, 503),
)
async def request_bank_details_mtan(
    policy_id: PolicyId, change: BankDetailsMtanRequest, principal: CurrentCustomer,
    svc: ServiceDep,
) -> MtanSent:  # fmt: skip
    """CT-4/ID-6: identity sends an mTAN by SMS bound to this policy and this IBAN; the
    customer confirms it at identity (`confirm_path`), then sends the change with
    `mtan_id`. 403 `second_factor_required` without a confirmed mobile number; 503 when
    identity cannot be reached."""
    command = RequestBankDetailsMtan(principal.customer_id, policy_id, change.iban)
    sent = await _execute(svc, svc.contracts.request_bank_details_mtan, command)
    return MtanSent(
        mtan_id=sent.mtan_id, purpose=sent.purpose, expires_at=sent.expires_at.isoformat(),
        confirm_path=f"/identity/mtans/{sent.mtan_id}/confirm",
    )  # fmt: skip


@customer.put(
    "/{policy_id}/bank-details", status_code=204, responses=problems(403, 404, 409, 422, 503)
)
async def change_bank_details(
    policy_id: PolicyId, change: BankDetailsChange, principal: CurrentCustomer, svc: ServiceDep
) -> Response:
    """CT-4/ID-6: a new IBAN, confirmed with an mTAN (its id is the request's key)."""
    command = ChangeBankDetails(principal.customer_id, policy_id, change.iban, change.mtan_id)
    await _execute(svc, svc.contracts.change_bank_details, command)
    return Response(status_code=204)


@customer.post("/{policy_id}/moves", status_code=204, responses=problems(403, 404, 409, 422))
async def report_move(
    policy_id: PolicyId,
    move: MoveReport,
    principal: CurrentCustomer,
    svc: ServiceDep,
    idempotency_key: IdempotencyKey,
) -> Response:
    """CT-4: report a move. Retried with the same Idempotency-Key it has one effect and the
    same answer; the same key with another body is refused (422)."""
    command = ReportMove(
        principal.customer_id, policy_id, move.new_address, move.moved_on, idempotency_key
    )
    await _execute(svc, svc.contracts.report_move, command)
    return Response(status_code=204)


def register(app: FastAPI) -> None:
    app.include_router(customer)
    app.include_router(internal)
    mount(app, document(STREAM))  # /asyncapi and /asyncapi.json


def create_app(service: Service) -> FastAPI:
    """The contracts HTTP app: service credentials for upstream systems, tokens for
    customers (keys fetched with the service's HTTP client)."""
    return service.runtime.http_app(service, register, customer_tokens=service.http)
