"""The contracts service in-process, on the real PostgreSQL and Kafka, isolated per test."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from contracts.bootstrap import Service, build, create_http_app
from contracts.config import ContractsSettings
from contracts_schemas import identity, upstream
from contracts_schemas.base import Contract
from contracts_schemas.common import Carrier, ProductLine
from servicekit.auth import (
    ServiceCredentials,
    basic_authorization,
    generate_signing_key,
    mint_token,
)
from servicekit.clock import FixedClock
from servicekit.db import drop_schema
from servicekit.testing import publish, required_env, unique

PRIVATE, JWKS = generate_signing_key("contracts-test")
SECRETS = {"policy-admin": "pa-secret", "collections": "co-secret"}
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@dataclass
class Running:
    service: Service
    http: httpx.AsyncClient
    prefix: str

    async def publish(self, *messages: Contract) -> None:
        await publish(self.service.runtime.producer, *messages, prefix=self.prefix)

    def customer(self, customer_id: str) -> dict[str, str]:
        expires = datetime.now(UTC) + timedelta(hours=1)
        return {"Authorization": "Bearer " + mint_token(PRIVATE, customer_id, "portal", expires)}

    def system(self, name: str, secret: str | None = None) -> dict[str, str]:
        return {"Authorization": basic_authorization(name, secret or SECRETS[name])}

    async def until(self, check: Any, within: float = 30.0) -> Any:
        deadline = asyncio.get_running_loop().time() + within
        while not (result := await check()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not reached within {within}s: {result!r}")
            await asyncio.sleep(0.1)
        return result


@asynccontextmanager
async def contracts_service() -> AsyncIterator[Running]:
    prefix = unique("ct") + "."
    settings = ContractsSettings(
        database_url=required_env("PORTAL_DATABASE_URL"),
        kafka_bootstrap=required_env("PORTAL_KAFKA_BOOTSTRAP"),
        database_schema=prefix.rstrip("."),
        topic_prefix=prefix,
        jwks=json.dumps(JWKS),
        service_credentials={n: ServiceCredentials.digest(s) for n, s in SECRETS.items()},
    )
    service = await build(settings, FixedClock(NOW))
    stop = asyncio.Event()
    loops = [asyncio.create_task(loop(stop)) for loop in service.loops()]
    transport = httpx.ASGITransport(app=create_http_app(service))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://contracts") as http:
            yield Running(service, http, prefix)
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        await service.close()
        await drop_schema(settings.database_url.get_secret_value(), settings.schema_name)


def issued(
    number: str, holders: tuple[str, ...], message_id: str | None = None
) -> upstream.PolicyIssuedUpstream:
    return upstream.PolicyIssuedUpstream(
        message_id=message_id or uuid.uuid4().hex,
        source_system="policy-admin",
        occurred_at=NOW - timedelta(days=30),
        policy_number=number,
        product_line=ProductLine.LIABILITY,
        carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG,
        policyholder_ids=holders,
        start_date=date(2026, 1, 1),
        tariff="Privathaftpflicht Best",
        annual_premium_cents=8_900,
    )


def paid(number: str, cents: int = 8_900) -> upstream.PremiumPaidUpstream:
    return upstream.PremiumPaidUpstream(
        message_id=uuid.uuid4().hex,
        source_system="collections",
        occurred_at=NOW - timedelta(days=1),
        policy_number=number,
        payment_id=uuid.uuid4().hex[:12],
        amount_cents=cents,
    )


def activated(customer: str) -> identity.AccountActivated:
    return identity.AccountActivated(
        event_id=uuid.uuid4(),
        aggregate_id=customer,
        aggregate_version=2,
        occurred_at=NOW - timedelta(days=10),
        customer_ids=(customer,),
        customer_id=customer,
    )
