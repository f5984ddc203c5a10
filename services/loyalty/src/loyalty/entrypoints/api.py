"""HTTP API of the loyalty programme (tile "My benefits").

There is deliberately no endpoint to buy or transfer points (LOY-6).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, Field
from servicekit.db import Connection
from servicekit.eventstore import transaction_retrying_conflicts
from servicekit.http import CurrentCustomer, InternalCaller, Problem

from loyalty.bootstrap import Service
from loyalty.domain.decisions import EnrolmentRefused, RedemptionRefused
from loyalty.domain.facts import RewardRedeemed
from loyalty.domain.ledger import Ledger
from loyalty.entrypoints.views import statement
from loyalty.handlers import UnknownReward
from loyalty.jobs import RunKind, WrongRunDate, run_ledger_job, run_moment

customer = APIRouter(prefix="/loyalty", tags=["customers"])
operators = APIRouter(prefix="/internal/loyalty", tags=["operators"])


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


ServiceDep = Annotated[Service, Depends(service)]


class Redemption(BaseModel):
    reward_id: str = Field(min_length=1, max_length=100)
    redemption_id: str = Field(
        min_length=8, max_length=100, description="chosen by the client; retrying is safe"
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


@customer.post("/enrolment", status_code=201)
async def enrol(principal: CurrentCustomer, svc: ServiceDep) -> dict[str, Any]:
    """LOY-1: join the programme (free; adults resident in Germany, natural persons)."""
    now = svc.runtime.clock.now()

    async def work(conn: Connection) -> Ledger | EnrolmentRefused:
        return await svc.loyalty.enrol(conn, principal.customer_id, now)

    result = await transaction_retrying_conflicts(svc.runtime.pool, work)
    if isinstance(result, EnrolmentRefused):
        raise _refusal(409 if result.reason_code.value == "already_enrolled" else 422, result)
    return statement(result)


@customer.get("/statement")
async def my_statement(principal: CurrentCustomer, svc: ServiceDep) -> dict[str, Any]:
    """LOY-10/LOY-13: balance, lots and expiry, next expiry, pending credits, history."""
    async with svc.runtime.pool.acquire() as conn:
        ledger = await svc.loyalty.statement(conn, principal.customer_id, svc.runtime.clock.now())
    return statement(ledger)


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


@customer.post("/redemptions", status_code=201, response_model=Redeemed)
async def redeem(request: Redemption, principal: CurrentCustomer, svc: ServiceDep) -> Redeemed:
    """LOY-6: redeem a reward; a shortfall is paid for where the reward allows it."""
    now = svc.runtime.clock.now()

    async def work(conn: Connection) -> RewardRedeemed | RedemptionRefused:
        return await svc.loyalty.redeem(
            conn, principal.customer_id, request.reward_id, request.redemption_id, now
        )

    try:
        result = await transaction_retrying_conflicts(svc.runtime.pool, work)
    except UnknownReward:
        raise Problem(
            404,
            "unknown_reward",
            "Diese Prämie gibt es nicht.",
            type_="urn:portal:problem:unknown_reward",
        ) from None
    if isinstance(result, RedemptionRefused):
        raise _refusal(409 if result.reason_code.value == "already_redeemed" else 422, result)
    return Redeemed.model_validate(result, from_attributes=True)


@operators.post("/jobs/{kind}", response_model=JobResult)
async def run_job(
    kind: RunKind, business_date: date, svc: ServiceDep, caller: InternalCaller
) -> JobResult:
    """OPS-3: run the monthly / January run or the expiry sweep for a business date."""
    try:
        as_of = run_moment(kind, business_date)
    except WrongRunDate as wrong:
        raise Problem(422, "wrong_run_date", str(wrong)) from None
    announced = await run_ledger_job(svc.runtime.pool, svc.loyalty, as_of)
    return JobResult(kind=kind, business_date=business_date, announced=announced)


def register(app: FastAPI) -> None:
    app.include_router(customer)
    app.include_router(operators)
