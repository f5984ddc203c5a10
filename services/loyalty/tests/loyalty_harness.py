"""The loyalty service in-process, on the real PostgreSQL and Kafka, isolated per test."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from contracts_schemas import contracts, documents, identity
from contracts_schemas.base import Contract
from contracts_schemas.common import PostalAddress, ProductLine
from loyalty.bootstrap import Service, build, create_http_app
from loyalty.config import LoyaltySettings
from servicekit.auth import (
    ServiceCredentials,
    basic_authorization,
    generate_signing_key,
    mint_token,
)
from servicekit.clock import FixedClock
from servicekit.db import drop_schema
from servicekit.testing import publish, required_env, unique

BERLIN = ZoneInfo("Europe/Berlin")
PRIVATE, JWKS = generate_signing_key("loyalty-test")
OPERATOR_SECRET = "operator-secret"


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@dataclass
class Running:
    service: Service
    clock: FixedClock
    http: httpx.AsyncClient
    prefix: str

    async def publish(self, *messages: Contract) -> None:
        await publish(self.service.runtime.producer, *messages, prefix=self.prefix)

    def customer(self, customer_id: str) -> dict[str, str]:
        expires = datetime.now().astimezone() + timedelta(hours=1)
        return {"Authorization": "Bearer " + mint_token(PRIVATE, customer_id, "portal", expires)}

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": basic_authorization("operators", OPERATOR_SECRET)}

    async def statement(self, customer_id: str) -> dict[str, Any]:
        response = await self.http.get("/loyalty/statement", headers=self.customer(customer_id))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def until(self, check: Any, within: float = 30.0) -> Any:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            result = await check()
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not reached within {within}s: {result!r}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def loyalty_service(at: datetime) -> AsyncIterator[Running]:
    prefix = unique("lt") + "."
    settings = LoyaltySettings(
        database_url=required_env("PORTAL_DATABASE_URL"),
        kafka_bootstrap=required_env("PORTAL_KAFKA_BOOTSTRAP"),
        database_schema=prefix.rstrip("."),
        topic_prefix=prefix,
        jwks=json.dumps(JWKS),
        service_credentials={"operators": ServiceCredentials.digest(OPERATOR_SECRET)},
        run_scheduler=False,
    )
    clock = FixedClock(at)
    service = await build(settings, clock)
    stop = asyncio.Event()
    loops = [asyncio.create_task(loop(stop)) for loop in service.loops()]
    transport = httpx.ASGITransport(app=create_http_app(service))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://loyalty") as http:
            yield Running(service, clock, http, prefix)
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        await service.close()
        await drop_schema(settings.database_url.get_secret_value(), settings.schema_name)


def _event(customer: str, at: datetime) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "aggregate_id": customer, "aggregate_version": 1,
            "occurred_at": at, "customer_ids": (customer,)}  # fmt: skip


def registered(
    customer: str, at: datetime, born: date = date(1980, 1, 1)
) -> identity.CustomerRegistered:
    return identity.CustomerRegistered(
        **_event(customer, at), customer_id=customer, first_name="Max", last_name="Muster",
        birth_date=born, email=f"{customer}@example.org",
        address=PostalAddress(recipient="Max Muster", street="Hauptstr. 1", postal_code="10115",
                              city="Berlin"),
    )  # fmt: skip


def cancelled_account(customer: str, at: datetime) -> identity.AccountCancelled:
    return identity.AccountCancelled(**_event(customer, at), customer_id=customer)


def email_instead_of_letter(customer: str, at: datetime) -> documents.EmailInsteadOfLetterActivated:
    return documents.EmailInsteadOfLetterActivated(**_event(customer, at), customer_id=customer)


def policy_issued(
    policy: str, holders: tuple[str, ...], start: date, at: datetime
) -> contracts.PolicyIssued:
    return contracts.PolicyIssued(
        event_id=uuid.uuid4(), aggregate_id=policy, aggregate_version=1, occurred_at=at,
        customer_ids=holders, policy_id=policy, policy_number=policy,
        product_line=ProductLine.MOTOR, carrier="allianz_versicherungs_ag", point_relevant=True,
        policyholder_ids=holders, start_date=start,
    )  # fmt: skip


def premium_paid(
    policy: str, holders: tuple[str, ...], cents: int, at: datetime, version: int
) -> contracts.PremiumPaid:
    return contracts.PremiumPaid(
        event_id=uuid.uuid4(), aggregate_id=policy, aggregate_version=version, occurred_at=at,
        customer_ids=holders, policy_id=policy, payment_id=f"pay-{uuid.uuid4().hex[:8]}",
        product_line=ProductLine.MOTOR, point_relevant=True, amount_cents=cents,
        policyholder_ids=holders,
    )  # fmt: skip
