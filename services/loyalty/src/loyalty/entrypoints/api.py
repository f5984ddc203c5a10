"""HTTP API of the loyalty programme (tile "My benefits"): `create_app(service)`.

Each route parses, calls one handler in one transaction (`service.transactions`), and
maps the answer to HTTP. There is deliberately no endpoint to buy or transfer points
(LOY-6).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, Field
from servicekit.asyncapi import document, mount
from servicekit.http import CurrentCustomer, Problem, problems, requires
from servicekit.permissions import Operation
from servicekit.unit_of_work import Conflict

from loyalty.bootstrap import Service
from loyalty.domain.decisions import (
    EnrolmentRefusalCode,
    EnrolmentRefused,
    RedemptionRefusalCode,
    RedemptionRefused,
)
from loyalty.entrypoints.stream import STREAM
from loyalty.entrypoints.views import statement, statement_json
from loyalty.handlers import Enrol, GetStatement, Redeem, UnknownReward
from loyalty.jobs import RunKind, RunRefused, run_ledger_job, run_moment

customer = APIRouter(prefix="/loyalty", tags=["customers"])
operators = APIRouter(prefix="/internal/loyalty", tags=["operators"])


def _service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


ServiceDep = Annotated[Service, Depends(_service)]
Operators = Annotated[str, Depends(requires(Operation.JOBS))]


VISIBLE_ASCII = r"^[!-~]+$"


class Redemption(BaseModel):
    reward_id: str = Field(min_length=1, max_length=100, pattern=VISIBLE_ASCII)
    redemption_id: str = Field(
        min_length=8,
        max_length=100,
        pattern=VISIBLE_ASCII,
        description="chosen by the client (e.g. a UUID); retrying with it is safe",
    )


class Redeemed(BaseModel):
    redemption_id: str
    reward_id: str
    points: int
    co_payment_cents: int


class RewardView(BaseModel):
    reward_id: str
    name: str
    points: int
    co_payment_allowed: bool
    cents_per_missing_point: int


class JobResult(BaseModel):
    kind: RunKind
    business_date: date
    announced: int


def _refusal(status: int, refusal: EnrolmentRefused | RedemptionRefused) -> Problem:
    code = refusal.reason_code.value
    return Problem(status, code, refusal.detail, type_=f"urn:portal:problem:{code}")


def _busy() -> Problem:
    """Other decisions for this account kept winning the race: the client may retry."""
    return Problem(
        409,
        "concurrent_decisions",
        "Ihr Vorteilskonto wird gerade von einer anderen Anfrage geändert. Bitte versuchen "
        "Sie es erneut.",
        type_="urn:portal:problem:concurrent_decisions",
    )


@customer.post("/enrolment", status_code=201, responses=problems(409, 422))
async def enrol(principal: CurrentCustomer, svc: ServiceDep) -> dict[str, Any]:
    """LOY-1: join the programme (free; adults resident in Germany, natural persons)."""
    try:
        result = await svc.transactions.execute(svc.loyalty.enrol, Enrol(principal.customer_id))
    except Conflict:
        raise _busy() from None
    if isinstance(result, EnrolmentRefused):
        already = result.reason_code is EnrolmentRefusalCode.ALREADY_ENROLLED
        raise _refusal(409 if already else 422, result)
    return statement(result)


@customer.get("/statement", response_model=dict[str, Any])
async def my_statement(principal: CurrentCustomer, svc: ServiceDep) -> Response:
    """LOY-10/LOY-13: balance, lots and expiry, next expiry, pending credits, history."""
    ledger = await svc.transactions.execute(
        svc.loyalty.statement, GetStatement(principal.customer_id)
    )
    # Encoded once here: a long history is tens of thousands of objects.
    return Response(statement_json(ledger), media_type="application/json")


@customer.get("/rewards", response_model=list[RewardView])
async def rewards(svc: ServiceDep) -> list[RewardView]:
    """LOY-6: the reward catalogue."""
    return [
        RewardView(
            reward_id=r.reward_id,
            name=r.name,
            points=r.points,
            co_payment_allowed=r.co_payment_allowed,
            cents_per_missing_point=r.cents_per_missing_point,
        )
        for r in svc.loyalty.config.rewards.values()
    ]


@customer.post(
    "/redemptions", status_code=201, response_model=Redeemed, responses=problems(404, 409, 422)
)
async def redeem(request: Redemption, principal: CurrentCustomer, svc: ServiceDep) -> Redeemed:
    """LOY-6: redeem a reward; a shortfall is paid for where the reward allows it."""
    command = Redeem(principal.customer_id, request.reward_id, request.redemption_id)
    try:
        result = await svc.transactions.execute(svc.loyalty.redeem, command)
    except UnknownReward:
        raise Problem(
            404,
            "unknown_reward",
            "Diese Prämie gibt es nicht.",
            type_="urn:portal:problem:unknown_reward",
        ) from None
    except Conflict:
        raise _busy() from None
    if isinstance(result, RedemptionRefused):
        already = result.reason_code is RedemptionRefusalCode.ALREADY_REDEEMED
        raise _refusal(409 if already else 422, result)
    return Redeemed.model_validate(result, from_attributes=True)


@operators.post("/jobs/{kind}", response_model=JobResult, responses=problems(422))
async def run_job(
    kind: RunKind, business_date: date, svc: ServiceDep, caller: Operators
) -> JobResult:
    """OPS-3: run the monthly / January run or the expiry sweep for a business date (not
    after the service's business date)."""
    try:
        as_of = run_moment(kind, business_date, svc.runtime.clock.now())
    except RunRefused as refused:
        raise Problem(
            422, "run_refused", str(refused), type_="urn:portal:problem:run_refused"
        ) from None
    announced = await run_ledger_job(svc.transactions, svc.loyalty, as_of)
    return JobResult(kind=kind, business_date=business_date, announced=announced)


def create_app(service: Service) -> FastAPI:
    def register(app: FastAPI) -> None:
        app.include_router(customer)
        app.include_router(operators)
        mount(app, document(STREAM))  # /asyncapi and /asyncapi.json

    return service.runtime.http_app(service, register, customer_tokens=service.http)
