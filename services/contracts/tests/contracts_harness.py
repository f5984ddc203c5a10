"""The contracts service in-process, on the real PostgreSQL and Kafka, isolated per test."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from contracts.bootstrap import Service, build
from contracts.config import ContractsSettings
from contracts.entrypoints.api import create_app
from contracts.entrypoints.stream import subscribe
from contracts_schemas import identity, upstream
from contracts_schemas.base import Contract, UpstreamMessage
from contracts_schemas.common import Carrier, ProductLine
from servicekit.auth import (
    ServiceCredentials,
    basic_authorization,
    generate_signing_key,
    mint_token,
)
from servicekit.clock import FixedClock
from servicekit.db import drop_schema
from servicekit.kafka import reliable_producer
from servicekit.testing import HANG_GUARD_SECONDS, publish, required_env, served, unique, until

PRIVATE, JWKS = generate_signing_key("contracts-test")
SECRETS = {"policy-admin": "pa-secret", "collections": "co-secret", "operators": "op-secret"}
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@dataclass
class Running:
    service: Service
    http: httpx.AsyncClient
    prefix: str
    producer: AIOKafkaProducer

    async def publish(self, *messages: Contract, source: str | None = None) -> None:
        """As their owners would: upstream messages from `/<source_system>`, the others
        from `/identity` (or from `source`)."""
        for message in messages:
            origin = source or (
                f"/{message.source_system}" if isinstance(message, UpstreamMessage) else "/identity"
            )
            await publish(self.producer, message, prefix=self.prefix, source=origin)

    def customer(self, customer_id: str) -> dict[str, str]:
        expires = datetime.now(UTC) + timedelta(hours=1)
        return {"Authorization": "Bearer " + mint_token(PRIVATE, customer_id, "portal", expires)}

    def system(self, name: str, secret: str | None = None) -> dict[str, str]:
        return {"Authorization": basic_authorization(name, secret or SECRETS[name])}

    def served(self) -> AbstractAsyncContextManager[str]:
        """The same service's API over real HTTP on a free port; yields its base URL."""
        return served(create_app(self.service))

    async def until(self, check: Any, within: float = HANG_GUARD_SECONDS) -> Any:
        return await until(check, within)


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
    subscribe(service.stream, service.contracts)
    # The relay publishes through the stream's broker: it stops first, so that the broker
    # is never closed under a publish in flight (servicekit's `serve` stops both at once).
    relay_stop, stream_stop = asyncio.Event(), asyncio.Event()
    stream = asyncio.create_task(service.runtime.stream_loop(service.stream)(stream_stop))
    relay = asyncio.create_task(service.runtime.outbox_loop(service.stream)(relay_stop))
    transport = httpx.ASGITransport(app=create_app(service))
    producer = reliable_producer(settings.kafka_bootstrap, unique("ct-test-producer"))
    await producer.start()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://contracts") as http:
            yield Running(service, http, prefix, producer)
    finally:
        await producer.stop()
        relay_stop.set()
        await asyncio.gather(relay, return_exceptions=True)
        stream_stop.set()
        await asyncio.gather(stream, return_exceptions=True)
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
