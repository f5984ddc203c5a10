"""identity and contracts together, in-process, on the real PostgreSQL and Kafka: one
topic prefix (contracts' policy events reach identity's projection, identity's
AccountActivated reaches contracts), a schema each, identity served over real HTTP
(contracts fetches its key set and calls its internal mTAN API there)."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from contracts.bootstrap import Service as ContractsService
from contracts.bootstrap import build as build_contracts
from contracts.config import ContractsSettings
from contracts.entrypoints.api import create_app as contracts_app
from contracts.entrypoints.stream import subscribe as subscribe_contracts
from contracts_schemas import topics
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import decode, from_kafka
from contracts_schemas.common import Carrier, PolicyholderDetails, PostalAddress, ProductLine
from contracts_schemas.upstream import PolicyIssuedUpstream
from identity.bootstrap import Service as IdentityService
from identity.bootstrap import build as build_identity
from identity.config import IdentitySettings
from identity.entrypoints.api import create_app as identity_app
from identity.entrypoints.stream import subscribe as subscribe_identity
from identity_world import PASSWORD
from servicekit.auth import ServiceCredentials, basic_authorization
from servicekit.db import drop_schema
from servicekit.testing import HANG_GUARD_SECONDS, read_topic, required_env, served, unique
from servicekit.testing import until as wait_until

POLICY_ADMIN_SECRET = "pa-glue-secret"
CONTRACTS_SECRET = "contracts-glue-secret"
NOTIFIER_SECRET = "notifier-glue-secret"


def fresh_key() -> str:
    """A fresh 32-byte key (URL-safe base64), as scripts/run-platform makes them."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@dataclass
class Glue:
    prefix: str
    identity: IdentityService
    contracts: ContractsService
    identity_http: httpx.AsyncClient  # over real HTTP
    contracts_http: httpx.AsyncClient  # ASGI
    identity_url: str

    def policy_admin(self) -> dict[str, str]:
        return {"Authorization": basic_authorization("policy-admin", POLICY_ADMIN_SECRET)}

    async def codes(self, kind: type[Any], at_least: int = 1) -> list[Any]:
        """Identity's code events of `kind` (the notifier's topic: codes travel only there)."""
        records = await read_topic(
            required_env("PORTAL_KAFKA_BOOTSTRAP"), self.prefix + topics.IDENTITY_CODES,
            at_least=at_least, wait_seconds=2,
        )  # fmt: skip
        found: list[Contract] = [decode(from_kafka(r.headers, r.value)) for r in records]
        return [m for m in found if isinstance(m, kind)]


async def until(check: Any, within: float = HANG_GUARD_SECONDS) -> Any:
    return await wait_until(check, within, every=0.2)


@asynccontextmanager
async def glue(with_mtan: bool = True) -> AsyncIterator[Glue]:
    prefix = unique("glue") + "."
    base = prefix.rstrip(".").replace("-", "_")
    database_url = required_env("PORTAL_DATABASE_URL")
    kafka = required_env("PORTAL_KAFKA_BOOTSTRAP")
    identity_settings = IdentitySettings(
        database_url=database_url, kafka_bootstrap=kafka, database_schema=f"{base}_identity",
        topic_prefix=prefix, instance_id=base,
        service_credentials={
            "contracts": ServiceCredentials.digest(CONTRACTS_SECRET),
            "notifier": ServiceCredentials.digest(NOTIFIER_SECRET),  # not granted `mtan`
        },
        data_key=fresh_key(), code_pepper=fresh_key(),
    )  # fmt: skip
    identity = await build_identity(identity_settings)
    subscribe_identity(identity.stream, identity.identity)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop(stop)) for loop in identity.loops()]
    contracts: ContractsService | None = None
    try:
        async with served(identity_app(identity)) as identity_url:
            extra: dict[str, Any] = {}
            if with_mtan:
                extra = {"identity_base_url": identity_url, "identity_secret": CONTRACTS_SECRET}
            contracts_settings = ContractsSettings(
                database_url=database_url, kafka_bootstrap=kafka,
                database_schema=f"{base}_contracts", topic_prefix=prefix, instance_id=base,
                jwks_url=f"{identity_url}/.well-known/jwks.json",
                service_credentials={
                    "policy-admin": ServiceCredentials.digest(POLICY_ADMIN_SECRET)
                },
                **extra,
            )  # fmt: skip
            contracts = await build_contracts(contracts_settings)
            subscribe_contracts(contracts.stream, contracts.contracts)
            tasks += [asyncio.create_task(loop(stop)) for loop in contracts.loops()]
            async with (
                httpx.AsyncClient(base_url=identity_url, timeout=30) as identity_http,
                httpx.AsyncClient(transport=httpx.ASGITransport(app=contracts_app(contracts)),
                                  base_url="http://contracts", timeout=30) as contracts_http,
            ):  # fmt: skip
                yield Glue(prefix, identity, contracts, identity_http, contracts_http,
                           identity_url)  # fmt: skip
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if contracts is not None:
            await contracts.close()
            await drop_schema(database_url, f"{base}_contracts")
        await identity.close()
        await drop_schema(database_url, f"{base}_identity")


ON_POLICY = PostalAddress(recipient="Frau Erika Mustermann", street="Am Policenweg 3",
                          postal_code="80331", city="München")  # fmt: skip
TYPED = {"recipient": "Erika Mustermann", "street": "Heidestraße 17", "postal_code": "51147",
         "city": "Köln"}  # fmt: skip


def issued_upstream(number: str, holder_id: str) -> PolicyIssuedUpstream:
    return PolicyIssuedUpstream(
        message_id=uuid.uuid4().hex, source_system="policy-admin",
        occurred_at=datetime.now(UTC) - timedelta(days=1), policy_number=number,
        product_line=ProductLine.LIABILITY, carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG,
        policyholder_ids=(holder_id,), start_date=date(2026, 1, 1),
        policyholders=(PolicyholderDetails(
            customer_id=holder_id, given_name="Erika", family_name="Mustermann",
            birth_date=date(1980, 5, 17), postal_address=ON_POLICY,
        ),),
    )  # fmt: skip


def registration(username: str, number: str, birth_date: str, **extra: Any) -> dict[str, Any]:
    return {
        "username": username, "password": PASSWORD, "first_name": "erika",
        "last_name": "MUSTERMANN", "birth_date": birth_date, "email": f"{username}@example.org",
        "address": TYPED, "policy_number": number, **extra,
    }  # fmt: skip


async def issue_and_project(g: Glue, number: str, holder_id: str) -> None:
    posted = await g.contracts_http.post(
        "/internal/upstream/policies",
        json=issued_upstream(number, holder_id).model_dump(mode="json"),
        headers=g.policy_admin(),
    )
    assert posted.status_code == 201, posted.text

    async def projected() -> bool:
        async with g.identity.runtime.pool.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT holders_enc IS NOT NULL FROM policies WHERE policy_number = $1", number
            ))  # fmt: skip

    await until(projected)
