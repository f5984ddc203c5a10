"""The loyalty service in-process, on the real PostgreSQL and Kafka, isolated per test."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from contracts_schemas import contracts, documents, identity
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from contracts_schemas.common import PostalAddress, ProductLine
from loyalty.bootstrap import Service, build
from loyalty.config import DEFAULT_REWARDS, LoyaltySettings, RewardSetting
from loyalty.entrypoints.api import create_app
from loyalty.entrypoints.cli import serving
from loyalty.entrypoints.stream import FACTS_GROUP
from servicekit.auth import (
    ServiceCredentials,
    basic_authorization,
    generate_signing_key,
    mint_token,
)
from servicekit.clock import BERLIN, FixedClock
from servicekit.db import drop_schema
from servicekit.kafka import reliable_producer
from servicekit.testing import publish, required_env, served, unique, until

PRIVATE, JWKS = generate_signing_key("loyalty-test")
SYSTEM_SECRETS = {
    "operators": "operator-secret",
    "collections": "collections-secret",
    "policy-admin": "policy-admin-secret",
}
SOURCE = "/test"
# A reward without co-payment for the concurrency tests (LOY-6).
TICKETS = RewardSetting(name="Tickets", points=250, co_payment_allowed=False)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@dataclass
class Running:
    service: Service
    clock: FixedClock
    http: httpx.AsyncClient
    prefix: str
    producer: AIOKafkaProducer
    published: list[str]

    async def publish(self, *messages: Contract) -> None:
        """Publish as the owning systems would; `all_consumed` then waits for these."""
        await publish(self.producer, *messages, prefix=self.prefix, source=SOURCE)
        self.published += [_inbox_key(message) for message in messages]

    async def all_consumed(self) -> bool:
        """Every message published so far is in the loyalty consumer's inbox, so its facts
        are stored (inbox rows and facts commit in one transaction)."""
        async with self.service.runtime.pool.acquire() as conn:
            seen = await conn.fetchval(
                "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = ANY($2::text[])",
                self.prefix + FACTS_GROUP,
                self.published,
            )
        return bool(seen == len(set(self.published)))

    async def outbox_drained(self) -> bool:
        """Everything the service decided or announced is acknowledged by the broker."""
        async with self.service.runtime.pool.acquire() as conn:
            pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return bool(pending == 0)

    async def outbox_rows_queued(self) -> int:
        """How many outbox rows were ever queued (the last value of the table's identity):
        the relay deletes the rows it sent, so counting the table's rows proves nothing."""
        async with self.service.runtime.pool.acquire() as conn:
            return int(await conn.fetchval(
                "SELECT coalesce(pg_sequence_last_value("
                "pg_get_serial_sequence('outbox', 'id')::regclass), 0)"
            ))  # fmt: skip

    def served(self) -> AbstractAsyncContextManager[str]:
        """The same service's API over real HTTP on a free port; yields its base URL."""
        return served(create_app(self.service))

    def system(self, name: str) -> dict[str, str]:
        return {"Authorization": basic_authorization(name, SYSTEM_SECRETS[name])}

    def customer(self, customer_id: str) -> dict[str, str]:
        expires = datetime.now().astimezone() + timedelta(hours=1)
        return {"Authorization": "Bearer " + mint_token(PRIVATE, customer_id, "portal", expires)}

    @property
    def operator(self) -> dict[str, str]:
        return self.system("operators")

    async def statement(self, customer_id: str) -> dict[str, Any]:
        response = await self.http.get("/loyalty/statement", headers=self.customer(customer_id))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def until(self, check: Any, within: float = 30.0) -> Any:
        return await until(check, within)


@asynccontextmanager
async def loyalty_service(at: datetime) -> AsyncIterator[Running]:
    prefix = unique("lt") + "."
    settings = LoyaltySettings(
        database_url=required_env("PORTAL_DATABASE_URL"),
        kafka_bootstrap=required_env("PORTAL_KAFKA_BOOTSTRAP"),
        database_schema=prefix.rstrip("."),
        topic_prefix=prefix,
        jwks=json.dumps(JWKS),
        service_credentials={
            name: ServiceCredentials.digest(secret) for name, secret in SYSTEM_SECRETS.items()
        },
        rewards={**DEFAULT_REWARDS, "tickets": TICKETS},
        run_scheduler=False,
    )
    clock = FixedClock(at)
    service = serving(await build(settings, clock))
    stop = asyncio.Event()
    loops = [asyncio.create_task(loop(stop)) for loop in service.loops()]
    transport = httpx.ASGITransport(app=create_app(service))
    producer = reliable_producer(settings.kafka_bootstrap, unique("lt-producer"))
    await producer.start()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://loyalty") as http:
            yield Running(service, clock, http, prefix, producer, [])
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        await producer.stop()
        await service.close()
        await drop_schema(settings.database_url.get_secret_value(), settings.schema_name)


def _inbox_key(message: Contract) -> str:
    cloud_event = encode(message, SOURCE)
    return f"{cloud_event.source}#{cloud_event.id}"


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


async def enrol(running: Running, customer: str) -> None:
    """LOY-1 once the registration is stored: exactly one 201."""
    await running.until(running.all_consumed)
    response = await running.http.post("/loyalty/enrolment", headers=running.customer(customer))
    assert response.status_code == 201, response.text


async def history_of_two_customers(running: Running) -> tuple[str, str]:
    """Registration, enrolment, a joint policy 11 years old, payments, a bonus, a forfeit."""
    anna, ben = "anna", "ben"
    await running.publish(registered(anna, berlin(2026, 1, 2)), registered(ben, berlin(2026, 1, 2)))
    running.clock.set(berlin(2026, 1, 3, 9))
    await enrol(running, anna)
    await enrol(running, ben)
    holders = (anna, ben)
    await running.publish(
        policy_issued("KFZ-1", holders, date(2015, 6, 1), berlin(2015, 5, 20)),
        *[premium_paid("KFZ-1", holders, 9_999, berlin(2026, m, 15), m + 1) for m in (1, 2, 3)],
        email_instead_of_letter(anna, berlin(2026, 1, 3, 9, 30)),
        cancelled_account(ben, berlin(2026, 3, 20)),
    )
    return anna, ben
