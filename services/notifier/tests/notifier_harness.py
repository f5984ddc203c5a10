"""The notifier on the real PostgreSQL and Kafka, isolated per test: in-process (`running_
notifier`) or as a real `notifier serve` process (`NotifierProcess`). Plus event factories
for customers that exist only in the test, and a producer that publishes like the owning
services do (CloudEvents, `prefix + topic`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaProducer
from contracts_schemas.base import Contract
from contracts_schemas.claims import (
    ClaimNotificationChannelChosen,
    ClaimStatus,
    ClaimStatusChanged,
)
from contracts_schemas.common import NotificationChannel, PostalAddress
from contracts_schemas.identity import (
    AccountLocked,
    ActivationCodeIssued,
    AddressChanged,
    ContactDetailsChanged,
    CustomerRegistered,
    EmailVerified,
    LoginCodeRequested,
)
from notifier.bootstrap import Service, build
from notifier.config import NotifierSettings
from notifier.domain.messages import ChannelKind, message_key, normalize_email
from notifier.entrypoints.api import create_app
from notifier.entrypoints.cli import prepare_to_serve
from readiness import Startup, wait_ready_async
from servicekit.auth import ServiceCredentials, basic_authorization
from servicekit.clock import Clock
from servicekit.db import drop_schema
from servicekit.kafka import reliable_producer
from servicekit.testing import HANG_GUARD_SECONDS, publish, required_env, unique

_JOINED = re.compile(r"Joined group '[^']+' \(generation (\d+)\)")
OPERATOR_SECRET = "notifier-operator-secret"
#: Other internal systems, known to the notifier but granted none of its operations.
OTHER_SYSTEMS = {"policy-admin": "policy-admin-secret", "collections": "collections-secret"}
BIN = Path(sys.executable).parent
T = TypeVar("T")


def operator_headers() -> dict[str, str]:
    return {"Authorization": basic_authorization("operators", OPERATOR_SECRET)}


def system_headers(system: str) -> dict[str, str]:
    """Valid credentials of another internal system (policy-admin, collections)."""
    return {"Authorization": basic_authorization(system, OTHER_SYSTEMS[system])}


def service_credentials() -> dict[str, str]:
    systems = {"operators": OPERATOR_SECRET, **OTHER_SYSTEMS}
    return {system: ServiceCredentials.digest(secret) for system, secret in systems.items()}


def platform() -> tuple[str, str]:
    """(database url, kafka bootstrap) of the running platform; fails - never skips -
    without it."""
    return required_env("PORTAL_DATABASE_URL"), required_env("PORTAL_KAFKA_BOOTSTRAP")


async def until(check: Callable[[], Awaitable[T]], within: float = HANG_GUARD_SECONDS) -> T:
    """Poll `check` until it returns something truthy; return that."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {within}s; last: {result!r}")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------- events


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Customer:
    """A customer who exists only in one test; builds the events the owning services
    would publish about them."""

    customer_id: str = field(default_factory=lambda: f"cust-{uuid.uuid4().hex[:12]}")
    first_name: str = "Erika"
    last_name: str = "Mustermann"
    mobile: str = "0151 2345678"
    identity_version: int = 0
    claim_versions: dict[str, int] = field(default_factory=dict)

    @property
    def email(self) -> str:
        return f"{self.customer_id}@example.org"

    @property
    def address(self) -> PostalAddress:
        return PostalAddress(
            recipient=f"{self.first_name} {self.last_name}",
            street="Heidestraße 17",
            postal_code="51147",
            city="Köln",
        )

    def _identity(self, at: datetime | None) -> dict[str, Any]:
        self.identity_version += 1
        return {
            "event_id": uuid.uuid4(),
            "aggregate_id": self.customer_id,
            "aggregate_version": self.identity_version,
            "occurred_at": at or now(),
            "customer_ids": (self.customer_id,),
            "customer_id": self.customer_id,
        }

    def _claim(self, claim_id: str, at: datetime | None) -> dict[str, Any]:
        version = self.claim_versions.get(claim_id, 0) + 1
        self.claim_versions[claim_id] = version
        return {
            "event_id": uuid.uuid4(),
            "aggregate_id": claim_id,
            "aggregate_version": version,
            "occurred_at": at or now(),
            "customer_ids": (self.customer_id,),
            "customer_id": self.customer_id,
            "claim_id": claim_id,
        }

    def registered(self, at: datetime | None = None) -> CustomerRegistered:
        return CustomerRegistered(
            **self._identity(at),
            first_name=self.first_name,
            last_name=self.last_name,
            birth_date=date(1980, 5, 17),
            address=self.address,
            email=self.email,
            mobile=self.mobile,
        )

    def email_verified(self, email: str | None = None) -> EmailVerified:
        """ID-1: the address proven (security notices go only to a verified address)."""
        return EmailVerified(**self._identity(None), email=email or self.email)

    def locked(self, minutes: int = 30) -> AccountLocked:
        return AccountLocked(
            **self._identity(None), locked_until=now() + timedelta(minutes=minutes)
        )

    def email_changed(self, new_email: str) -> ContactDetailsChanged:
        """ID-8 as identity announces it: once the new address is proven, with the old one."""
        return ContactDetailsChanged(
            **self._identity(None), email=new_email, previous_email=self.email
        )

    def moved(self, address: PostalAddress) -> AddressChanged:
        """CT-4 as identity announces it: the customer's new address after a reported move."""
        return AddressChanged(**self._identity(None), address=address)

    def claim_status(
        self,
        claim_id: str = "claim-1",
        new_status: ClaimStatus = ClaimStatus.DOCUMENTS_REQUESTED,
        at: datetime | None = None,
        *,
        old_status: ClaimStatus = ClaimStatus.IN_REVIEW,
        expected: date = date(2026, 12, 31),
        previously_expected: date | None = None,
    ) -> ClaimStatusChanged:
        return ClaimStatusChanged(
            **self._claim(claim_id, at),
            claim_number=f"SCH-2026-{claim_id[-6:]:>06}",
            old_status=old_status,
            new_status=new_status,
            expected_completion_date=expected,
            previous_expected_completion_date=previously_expected,
        )

    def channel_chosen(
        self, claim_id: str, channel: NotificationChannel, at: datetime | None = None
    ) -> ClaimNotificationChannelChosen:
        return ClaimNotificationChannelChosen(**self._claim(claim_id, at), channel=channel)

    def login_code(
        self, code: str = "482913", expires_at: datetime | None = None
    ) -> LoginCodeRequested:
        return LoginCodeRequested(
            **self._identity(None),
            code=code,
            mobile=self.mobile,
            expires_at=expires_at or now() + timedelta(minutes=5),
        )

    def activation_code(self, code: str = "X7K2-9PQ4") -> ActivationCodeIssued:
        return ActivationCodeIssued(
            **self._identity(None),
            code=code,
            address=self.address,
            expires_at=now() + timedelta(days=90),
        )

    def email_key(self, event: Any) -> str:
        """The NT-4 message key of the e-mail `event` triggers for this customer."""
        return message_key(event.event_id, ChannelKind.EMAIL, normalize_email(self.email))


class Publisher:
    """Publishes as the owning services would: CloudEvents on `prefix + topic`."""

    def __init__(self, producer: AIOKafkaProducer, prefix: str) -> None:
        self.producer = producer
        self.prefix = prefix

    async def __call__(self, *messages: Contract) -> None:
        await publish(self.producer, *messages, prefix=self.prefix)


@asynccontextmanager
async def publisher(prefix: str) -> AsyncIterator[Publisher]:
    _, bootstrap = platform()
    producer = reliable_producer(bootstrap, unique("notifier-test-producer"))
    await producer.start()
    try:
        yield Publisher(producer, prefix)
    finally:
        await producer.stop()


# ----------------------------------------------------------- the notifier in-process


def settings_for(prefix: str, **overrides: Any) -> NotifierSettings:
    """Fast retries and polling; real servers named by `overrides` (smtp_port, ...)."""
    dsn, bootstrap = platform()
    values: dict[str, Any] = {
        "database_url": dsn,
        "kafka_bootstrap": bootstrap,
        "database_schema": prefix.rstrip(".").replace("-", "_"),
        "topic_prefix": prefix,
        "service_credentials": service_credentials(),
        "smtp_host": "127.0.0.1",
        "smtp_security": "none",
        "smtp_from_address": "noreply@portal.example",
        "smtp_message_id_domain": "portal.example",
        "smtp_timeout_seconds": 2.0,
        "sms_api_key": "abcd1234",
        "sms_api_secret": "Sup3rSecret",
        "sms_timeout_seconds": 2.0,
        "documents_timeout_seconds": 2.0,
        "sending_lease_seconds": 5.0,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1.0,
        "worker_poll_seconds": 0.05,
        "log_level": "WARNING",
    }
    return NotifierSettings(**(values | overrides))


@dataclass
class Running:
    service: Service
    http: httpx.AsyncClient
    publish: Publisher
    prefix: str

    async def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.http.get(
            "/internal/notifier/deliveries", params=params, headers=operator_headers()
        )
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return body

    async def delivery(self, key: str) -> dict[str, Any]:
        response = await self.http.get(
            f"/internal/notifier/deliveries/{key}", headers=operator_headers()
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def settled(self, customer_id: str, count: int = 1) -> list[dict[str, Any]]:
        """The customer's deliveries once `count` exist and none is waiting or in flight."""

        async def check() -> list[dict[str, Any]] | None:
            found = await self.deliveries(customer_id=customer_id)
            waiting = {"queued", "sending", "failed"}
            if len(found) >= count and not any(d["status"] in waiting for d in found):
                return found
            return None

        return await until(check)

    async def waiting(self, customer_id: str, count: int) -> None:
        """Until `count` events wait in the customer's view for the customer to be known."""

        async def check() -> bool:
            waiting = await self._contact(customer_id, "jsonb_array_length(view->'waiting')")
            return bool(waiting == count)

        await until(check)

    async def contact_known(self, customer_id: str) -> None:
        async def check() -> bool:
            return bool(await self._contact(customer_id, "view IS NOT NULL"))

        await until(check)

    async def _contact(self, customer_id: str, expression: str) -> Any:
        """`expression` of the customer's row in `contacts` (None without one)."""
        async with self.service.runtime.pool.acquire() as conn:
            return await conn.fetchval(
                f"SELECT {expression} FROM contacts WHERE customer_id = $1",  # noqa: S608
                customer_id,
            )


@asynccontextmanager
async def running_notifier(clock: Clock | None = None, **overrides: Any) -> AsyncIterator[Running]:
    """The notifier's loops and API in this process, on its own schema and topics."""
    prefix = unique("nt") + "."
    settings = settings_for(prefix, **overrides)
    service = prepare_to_serve(await build(settings, clock))
    stop = asyncio.Event()
    loops = [asyncio.create_task(loop(stop)) for loop in service.loops()]
    transport = httpx.ASGITransport(app=create_app(service))
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://notifier") as http,
            publisher(prefix) as publish,
        ):
            yield Running(service, http, publish, prefix)
    finally:
        stop.set()
        results = await asyncio.gather(*loops, return_exceptions=True)
        await service.close()
        await drop_schema(settings.database_url.get_secret_value(), settings.schema_name)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert not failures, f"a notifier loop failed: {failures!r}"


# --------------------------------------------------------- `notifier serve` as a process


@dataclass
class NotifierProcess:
    """`notifier serve` as a real process (SIGKILL-able), configured by environment."""

    env: dict[str, str]
    port: int
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="notifier-")) / "notifier.log"
    )
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @classmethod
    def configured(cls, prefix: str, port: int, **settings: str) -> NotifierProcess:
        """`PORTAL_INSTANCE_ID` is the process's name in its consumer group (static
        membership): a restart of this process keeps it, so the group hands the restarted
        process the partitions of the killed one at once."""
        dsn, bootstrap = platform()
        env = os.environ | {
            "PORTAL_DATABASE_URL": dsn,
            "PORTAL_KAFKA_BOOTSTRAP": bootstrap,
            "PORTAL_DATABASE_SCHEMA": prefix.rstrip(".").replace("-", "_"),
            "PORTAL_TOPIC_PREFIX": prefix,
            "PORTAL_HTTP_PORT": str(port),
            "PORTAL_SERVICE_CREDENTIALS": json.dumps(service_credentials()),
            "PORTAL_INSTANCE_ID": f"{prefix}notifier-1",
            "PORTAL_LOG_LEVEL": "INFO",
        }
        env |= {f"PORTAL_{name.upper()}": value for name, value in settings.items()}
        return cls(env=env, port=port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            self.process = subprocess.Popen(
                [str(BIN / "notifier"), "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        assert self.process is not None
        await wait_ready_async(Startup("notifier", self.process, self.url, self.log_path))

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed or committed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def group_generations(self) -> list[int]:
        """The consumer group generation each start of the process joined (aiokafka's
        "Joined group ... (generation N)" log line, in order). A rebalance raises the
        generation; a static member taking its own place back does not."""
        return [int(n) for n in _JOINED.findall(self.log_path.read_text(errors="replace"))]

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]
