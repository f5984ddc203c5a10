"""Identity on the real PostgreSQL and Kafka, driven through its HTTP app (ASGI): the
policy projection from contracts' topic, registration -> activation letter event on
Kafka, login, activation, refresh rotation with reuse revocation, lockout, SMS 2FA and
the mTAN API other services call; a move reported on contracts' topic -> one
AddressChanged on identity's (CT-4)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from contracts_schemas import identity as ev
from contracts_schemas import topics
from contracts_schemas.cloudevents import decode, from_kafka
from contracts_schemas.common import Carrier, PostalAddress
from contracts_schemas.contracts import MoveReported
from glue_harness import fresh_key
from identity import commands as c
from identity.bootstrap import Service, build
from identity.config import IdentitySettings
from identity.entrypoints.api import create_app
from identity.entrypoints.stream import subscribe
from identity_world import PASSWORD, holder, policy_issued
from servicekit.auth import ServiceCredentials, basic_authorization
from servicekit.clock import Clock, FixedClock
from servicekit.db import drop_schema
from servicekit.kafka import reliable_producer
from servicekit.testing import publish, read_topic, read_whole_topic, required_env, unique, until

pytestmark = pytest.mark.integration


@asynccontextmanager
async def identity_service(
    wall: Clock | None = None, **extra: Any
) -> AsyncIterator[tuple[Service, httpx.AsyncClient, str]]:
    """`wall`: the security clock (throttles, codes, tokens); the system clock by default."""
    prefix = unique("it") + "."
    settings = IdentitySettings(
        database_url=required_env("PORTAL_DATABASE_URL"),
        kafka_bootstrap=required_env("PORTAL_KAFKA_BOOTSTRAP"),
        database_schema=prefix.rstrip(".").replace("-", "_"), topic_prefix=prefix,
        instance_id=prefix.rstrip("."),
        service_credentials={"contracts": ServiceCredentials.digest("contracts-secret")},
        data_key=fresh_key(), code_pepper=fresh_key(), **extra,
    )  # fmt: skip
    service = await build(settings, wall=wall)
    subscribe(service.stream, service.identity)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop(stop)) for loop in service.loops()]
    transport = httpx.ASGITransport(app=create_app(service), client=("198.51.100.9", 4711))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://identity") as http:
            yield service, http, prefix
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await service.close()
        await drop_schema(settings.database_url.get_secret_value(), settings.schema_name)


async def code_events(prefix: str, kind: type[ev.CodeEvent], at_least: int) -> list[Any]:
    records = await read_topic(
        required_env("PORTAL_KAFKA_BOOTSTRAP"), prefix + topics.IDENTITY_CODES, at_least=at_least
    )
    found = [decode(from_kafka(r.headers, r.value)) for r in records]
    return [m for m in found if isinstance(m, kind)]


def registration(policy_number: str | None, username: str = "erika") -> dict[str, Any]:
    return {
        "username": username, "password": PASSWORD, "first_name": "Erika",
        "last_name": "Mustermann", "birth_date": "1980-05-17", "email": "erika@example.org",
        "address": {"recipient": "Erika Mustermann", "street": "Heidestraße 17",
                    "postal_code": "51147", "city": "Köln"},
        "policy_number": policy_number,
    }  # fmt: skip


async def test_id3_id4_registration_letter_on_kafka_login_activation_and_refresh_rotation() -> None:
    async with identity_service() as (service, http, prefix):
        producer: AIOKafkaProducer = reliable_producer(
            required_env("PORTAL_KAFKA_BOOTSTRAP"), "identity-test"
        )
        await producer.start()
        try:
            policy = policy_issued("IT-1", ("P-IT-1",), Carrier.ALLIANZ_VERSICHERUNGS_AG)
            await publish(producer, policy, prefix=prefix)
        finally:
            await producer.stop()

        async def projected() -> bool:
            async with service.runtime.pool.acquire() as conn:
                return bool(await conn.fetchval(
                    "SELECT count(*) FROM policies WHERE policy_number = 'IT-1'"))  # fmt: skip

        await until(projected)
        response = await http.post("/identity/registrations", json=registration("IT-1"))
        assert response.status_code == 202, response.text
        letters = await until(lambda: code_events(prefix, ev.ActivationCodeIssued, 1))
        letter = letters[0]
        assert letter.customer_id == "P-IT-1"

        login = await http.post("/identity/login", json={"username": "ERIKA", "password": PASSWORD})
        assert login.status_code == 200, login.text
        tokens = login.json()
        assert tokens["previous_login_at"] is None
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        jwks = (await http.get("/.well-known/jwks.json")).json()
        assert jwks["keys"][0]["alg"] == "EdDSA"

        wrong = await http.post("/identity/activation", json={"code": "ZZZZ"}, headers=bearer)
        assert wrong.status_code == 400, wrong.text
        assert wrong.headers["content-type"] == "application/problem+json"
        activated = await http.post(
            "/identity/activation", json={"code": letter.code}, headers=bearer
        )
        assert activated.status_code == 200, activated.text
        me = (await http.get("/identity/me", headers=bearer)).json()
        assert me["activated"] is True
        assert me["limited_portal"] is False

        first = tokens["refresh_token"]
        rotated = await http.post("/identity/token/refresh", json={"refresh_token": first})
        assert rotated.status_code == 200
        reused = await http.post("/identity/token/refresh", json={"refresh_token": first})
        assert reused.status_code == 401
        family = await http.post(
            "/identity/token/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
        )
        assert family.status_code == 401

        async with service.runtime.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT birth_date_enc, address_enc FROM accounts")
        assert b"1980" not in bytes(row["birth_date_enc"])
        assert b"Heidestra" not in bytes(row["address_enc"])


async def test_id4_lockout_same_answers_and_id5_id6_sms_login_and_mtan_for_other_services() -> None:
    # ID-4's block lasts 2 s of wall-clock time from the third failure: on the system clock
    # a slow machine (Argon2 on a starved CPU) let it run out before the next try. The
    # clock stands still here, so the rule alone decides the answers.
    wall = FixedClock(datetime.now(UTC))
    async with identity_service(wall) as (_service, http, prefix):
        assert (await http.post("/identity/registrations", json=registration(None))).status_code
        bad = {"username": "erika", "password": "falsch-falsch-falsch"}
        unknown = await http.post("/identity/login", json={**bad, "username": "nobody"})
        wrong = await http.post("/identity/login", json=bad)
        assert unknown.status_code == wrong.status_code == 401
        assert {k: v for k, v in unknown.json().items() if k != "request_id"} == {
            k: v for k, v in wrong.json().items() if k != "request_id"
        }
        statuses = [(await http.post("/identity/login", json=bad)).status_code for _ in range(3)]
        assert statuses[-1] == 429  # slowed down, then locked for a while
        locked = await http.post("/identity/login", json={**bad, "password": PASSWORD})
        assert locked.status_code == 429
        assert locked.json()["retry_after"] >= 1

    async with identity_service() as (_service, http, prefix):
        await http.post("/identity/registrations", json=registration(None, "max"))
        tokens = (await http.post(
            "/identity/login", json={"username": "max", "password": PASSWORD})).json()  # fmt: skip
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        started = await http.post(
            "/identity/two-factor", json={"mobile": "+4915112345678"}, headers=bearer
        )
        assert started.status_code == 200, started.text
        mtan = (await until(lambda: code_events(prefix, ev.MtanRequested, 1)))[0]
        confirmed = await http.post(
            "/identity/two-factor/confirm", json={"code": mtan.code}, headers=bearer
        )
        assert confirmed.json()["login_again"] is True
        step = (await http.post(
            "/identity/login", json={"username": "max", "password": PASSWORD})).json()  # fmt: skip
        assert step["status"] == "sms_required"
        sms = (await until(lambda: code_events(prefix, ev.LoginCodeRequested, 1)))[0]
        second = await http.post(
            "/identity/login/sms", json={"login_ticket": step["login_ticket"], "code": sms.code}
        )
        assert second.status_code == 200, second.text
        assert second.json()["acr"] == "urn:portal:acr:2fa"
        bearer = {"Authorization": f"Bearer {second.json()['access_token']}"}
        customer_id = (await http.get("/identity/me", headers=bearer)).json()["customer_id"]

        contracts = {"Authorization": basic_authorization("contracts", "contracts-secret")}
        asked = await http.post(
            "/internal/identity/mtans",
            headers=contracts,
            json={
                "customer_id": customer_id,
                "purpose": "bank_details_change",
                "reference": "pol:abc",
            },
        )
        assert asked.status_code == 200, asked.text
        mtan_id = asked.json()["mtan_id"]

        async def bank_mtan() -> list[Any]:
            sent = await code_events(prefix, ev.MtanRequested, 1)
            return [m for m in sent if m.purpose == "bank_details_change"]

        code = (await until(bank_mtan))[0].code
        ok = await http.post(
            f"/identity/mtans/{mtan_id}/confirm", json={"code": code}, headers=bearer
        )
        assert ok.status_code == 200, ok.text
        consume = {"customer_id": customer_id, "reference": "pol:abc"}
        used = await http.post(
            f"/internal/identity/mtans/{mtan_id}/consume", json=consume, headers=contracts
        )
        assert used.json()["confirmed"] is True
        again = await http.post(
            f"/internal/identity/mtans/{mtan_id}/consume", json=consume, headers=contracts
        )
        assert again.json() == used.json()  # a retry of the same change: the same answer
        other = await http.post(
            f"/internal/identity/mtans/{mtan_id}/consume",
            json=consume | {"reference": "pol:other"}, headers=contracts,
        )  # fmt: skip
        assert other.json()["confirmed"] is False  # used up: it confirms no other change
        anonymous = await http.post(f"/internal/identity/mtans/{mtan_id}/consume", json=consume)
        assert anonymous.status_code == 401
        assert json.dumps(asked.json()).find(code) == -1  # the code never leaves by HTTP


async def test_ops1_operator_account_on_postgres_login_over_http_and_customer_routes_refuse_it(
) -> None:  # fmt: skip
    from identity.domain.operators import time_step, totp

    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    async with identity_service() as (service, http, _prefix):
        await service.transactions.execute(
            service.identity.create_operator, c.CreateOperator("ops-it", PASSWORD, secret)
        )
        code = totp(secret, time_step(datetime.now(UTC)))
        body = {"username": "ops-it", "password": PASSWORD, "otp": code}
        login = await http.post("/identity/operators/login", json=body)
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        assert login.json()["role"] == "operator"
        replayed = await http.post("/identity/operators/login", json=body)
        assert replayed.status_code == 401, replayed.text
        me = await http.get("/identity/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401, me.text
        async with service.runtime.pool.acquire() as conn:
            stored = await conn.fetchval("SELECT totp_secret_enc FROM operators")
        assert secret.encode() not in bytes(stored)


async def test_id4_the_client_address_behind_a_trusted_proxy_and_never_from_anybody_else(
) -> None:  # fmt: skip
    """Login failures count per client address. The ASGI peer here is 198.51.100.9: as a
    trusted proxy (the gateway) its X-Forwarded-For names the client; untrusted, the
    header is ignored and the peer is the client (a header cannot dodge the throttle)."""
    forwarded = {"X-Forwarded-For": "203.0.113.50"}
    bad = {"username": "nobody", "password": "falsch-falsch-falsch"}
    for proxies, counted in (([], "198.51.100.9"), (["198.51.100.0/24"], "203.0.113.50")):
        async with identity_service(trusted_proxies=proxies) as (service, http, _prefix):
            answer = await http.post("/identity/login", json=bad, headers=forwarded)
            assert answer.status_code == 401, answer.text
            async with service.runtime.pool.acquire() as conn:
                keys = await conn.fetch("SELECT key FROM throttles WHERE key LIKE 'addr:%'")
            assert [r["key"] for r in keys] == [f"addr:{counted}"]


async def test_ct4_nt3_a_move_on_two_policies_and_redelivered_is_one_address_changed() -> None:
    """Contracts' MoveReported for Erika's two policies (the first delivered twice) through
    identity's consumer: one AddressChanged through the outbox onto identity's customer
    topic; the account's new address is encrypted at rest."""
    berlin = PostalAddress(recipient="Frau Erika Mustermann", street="Lindenallee 5",
                           postal_code="10115", city="Berlin")  # fmt: skip

    def moved(number: str) -> MoveReported:
        return MoveReported(
            event_id=uuid.uuid4(), aggregate_id=f"pol-{number}", aggregate_version=2,
            occurred_at=datetime.now(UTC), policy_id=f"pol-{number}", new_address=berlin,
            moved_on=date(2026, 4, 1),
        )  # fmt: skip

    async with identity_service() as (service, http, prefix):
        producer: AIOKafkaProducer = reliable_producer(
            required_env("PORTAL_KAFKA_BOOTSTRAP"), unique("identity-test")
        )
        await producer.start()
        try:
            holders = ("P-MV-1",)
            await publish(producer, *(
                policy_issued(n, holders, Carrier.ALLIANZ_VERSICHERUNGS_AG, (holder(*holders),))
                for n in ("MV-1", "MV-2")
            ), prefix=prefix)  # fmt: skip

            async def consumed(count: int) -> bool:
                async with service.runtime.pool.acquire() as conn:
                    # identity's one consumer group: contracts' policy topic
                    return count == await conn.fetchval("SELECT count(*) FROM inbox")

            await until(lambda: consumed(2))
            response = await http.post("/identity/registrations", json=registration("MV-1"))
            assert response.status_code == 202, response.text
            await until(lambda: code_events(prefix, ev.ActivationCodeIssued, 1))
            first = moved("MV-1")
            await publish(producer, first, moved("MV-2"), first, prefix=prefix)
        finally:
            await producer.stop()

        await until(lambda: consumed(4))  # both moves applied, the redelivery absorbed

        async def all_sent() -> bool:
            async with service.runtime.pool.acquire() as conn:
                return not await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                )

        await until(all_sent)  # so the topic now holds everything identity ever queued
        async with service.runtime.pool.acquire() as conn:
            address_enc = await conn.fetchval(
                "SELECT address_enc FROM accounts WHERE customer_id = 'P-MV-1'"
            )
        assert b"Lindenallee" not in bytes(address_enc)
        records = await read_whole_topic(
            required_env("PORTAL_KAFKA_BOOTSTRAP"), prefix + topics.IDENTITY_CUSTOMER
        )
        found = [decode(from_kafka(r.headers, r.value)) for r in records]
        changes = [m for m in found if isinstance(m, ev.AddressChanged)]
        assert {e.event_id for e in changes} == {changes[0].event_id}  # one (relay may repeat)
        assert changes[0].customer_id == "P-MV-1"
        assert changes[0].address == berlin
