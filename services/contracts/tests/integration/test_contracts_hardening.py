"""Issue 7 against the real broker and database: one rule for duplicates on Kafka and HTTP,
reused message ids and idempotency keys refused (never a 500, never a stopped consumer),
NUL bytes refused, each system only its own operations, the OpenAPI promises kept."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import date
from typing import Any

import httpx
import pytest
from contracts_harness import NOW, Running, activated, contracts_service, issued, paid
from contracts_schemas import upstream
from contracts_schemas.cloudevents import CloudEvent
from servicekit.apitest import api_failures
from servicekit.kafka import OutgoingRecord, publish_all
from servicekit.testing import header, read_topic

pytestmark = pytest.mark.integration

DEAD_LETTERS = "portal.dlq.contracts.upstream-ingestion"


async def event_types(running: Running, policy_id: str) -> list[str]:
    async with running.service.runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version",
            policy_id,
        )
    return [row["event_type"].rsplit(".", 2)[-2] for row in rows]


async def recorded(running: Running, policy_id: str, expected: list[str]) -> list[str]:
    """Waits until the policy's stream holds `expected`, then returns what it holds."""

    async def reached() -> bool:
        return await event_types(running, policy_id) == expected

    await running.until(reached)
    return await event_types(running, policy_id)


async def dead_letters(running: Running, at_least: int, wait: float = 30.0) -> list[Any]:
    return await read_topic(
        running.service.runtime.settings.kafka_bootstrap,
        running.prefix + DEAD_LETTERS,
        at_least=at_least,
        wait_seconds=wait,
    )


def body(message: upstream.UpstreamMessage) -> dict[str, Any]:
    return message.model_dump(mode="json")


# --------------------------------------------------------------------------- item 3


async def test_ct1_kafka_records_a_payment_whose_message_id_policy_admin_used_before() -> None:
    """Issue 7 item 3: (source system, message id) on Kafka as on HTTP."""
    async with contracts_service() as running:
        await running.publish(issued("PHV-700", ("ida",), message_id="shared-M"))
        payment = paid("PHV-700").model_copy(update={"message_id": "shared-M"})
        await running.publish(payment)
        assert await recorded(running, "PHV-700", ["PolicyIssued", "PremiumPaid"]) == [
            "PolicyIssued",
            "PremiumPaid",
        ]


# --------------------------------------------------------------------------- item 4


async def test_ct1_http_a_reused_message_id_for_another_payment_is_a_422_never_a_500() -> None:
    async with contracts_service() as running:
        pa, co = running.system("policy-admin"), running.system("collections")
        for number in ("P1-710", "P2-710"):
            answer = await running.http.post(
                "/internal/upstream/policies", json=body(issued(number, ("jan",))), headers=pa
            )
            assert answer.status_code == 201, answer.text
        first = paid("P1-710").model_copy(update={"message_id": "M-710"})
        reused = paid("P2-710").model_copy(update={"message_id": "M-710"})
        answers = [
            await running.http.post("/internal/upstream/payments", json=body(m), headers=co)
            for m in (first, reused, paid("P2-710"), first)
        ]
        assert [a.status_code for a in answers] == [201, 422, 201, 200]
        problem = answers[1].json()
        assert answers[1].headers["content-type"] == "application/problem+json"
        assert problem["title"] == "message_id_reused"
        assert problem["detail"].startswith("message id already used for a different message")
        assert answers[3].json() == {
            "recorded_event_ids": answers[0].json()["recorded_event_ids"],
            "duplicate": True,
        }
        assert await event_types(running, "P2-710") == ["PolicyIssued", "PremiumPaid"]


async def test_ct1_kafka_dead_letters_a_reused_message_id_and_records_what_follows() -> None:
    async with contracts_service() as running:
        await running.publish(issued("P1-720", ("kai",)), issued("P2-720", ("kai",)))
        first = paid("P1-720").model_copy(update={"message_id": "M-720"})
        reused = paid("P2-720").model_copy(update={"message_id": "M-720"})
        # P1 and P2 are keys of different partitions: which one "reused" the id is decided
        # only once the first is recorded.
        await running.publish(first)
        assert await recorded(running, "P1-720", ["PolicyIssued", "PremiumPaid"])
        await running.publish(reused, paid("P2-720"))
        assert await recorded(running, "P2-720", ["PolicyIssued", "PremiumPaid"])
        dead = await dead_letters(running, at_least=1, wait=10)
        reasons = [header(d, "x-dlq-reason") or "" for d in dead]
        assert reasons[0].startswith("message_id_reused")


# --------------------------------------------------------------------------- item 1 (NUL)


async def test_ct1_a_nul_byte_is_a_422_on_http_and_a_dead_letter_on_kafka() -> None:
    async with contracts_service() as running:
        co = running.system("collections")
        await running.publish(issued("PHV-730", ("lea",)))
        assert await recorded(running, "PHV-730", ["PolicyIssued"])
        poisoned = body(paid("PHV-730")) | {"policy_number": "PHV-730\u0000"}
        answer = await running.http.post("/internal/upstream/payments", json=poisoned, headers=co)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        customer = await running.http.get("/contracts/PHV%00730", headers=running.customer("lea"))
        assert customer.status_code == 422

        # On Kafka, as collections would publish it: the envelope is fine, the body is not.
        message_id = uuid.uuid4().hex
        cloud_event = CloudEvent(
            id=message_id, type=upstream.PremiumPaidUpstream.type_name(), source="/collections",
            data=json.dumps(poisoned | {"message_id": message_id}).encode(),
        )  # fmt: skip
        topic = running.prefix + "upstream.contracts.v1"
        await publish_all(
            running.producer,
            [OutgoingRecord(topic, "PHV-730", cloud_event.data, cloud_event.headers())],
        )
        await running.publish(paid("PHV-730"))
        assert await recorded(running, "PHV-730", ["PolicyIssued", "PremiumPaid"])
        dead = await dead_letters(running, at_least=1)
        assert len(dead) == 1
        assert (header(dead[0], "x-dlq-reason") or "").startswith("schema violation")
        assert header(dead[0], "ce_id") == message_id


# --------------------------------------------------------------------------- items 7/8


async def moves_ready(running: Running, customer: str, *numbers: str) -> None:
    await running.publish(activated(customer))
    for number in numbers:
        await running.publish(issued(number, (customer,)))

    async def all_visible() -> bool:
        answer = await running.http.get("/contracts", headers=running.customer(customer))
        return sorted(c["policy_number"] for c in answer.json()) == sorted(numbers)

    await running.until(all_visible)


def move(street: str, day: int = 1) -> dict[str, Any]:
    address = {"recipient": "Mia", "street": street, "postal_code": "10115", "city": "Berlin"}
    return {"new_address": address, "moved_on": date(2026, 11, day).isoformat()}


async def test_ct4_idempotency_keys_are_scoped_by_customer_and_contract() -> None:
    """Issue 7 item 8: one key for moves on two of one's own contracts records both; the
    retry is the same answer; the same key with another body is a 422."""
    async with contracts_service() as running:
        await moves_ready(running, "mia", "PHV-740", "PHV-741")
        headers = running.customer("mia") | {"Idempotency-Key": "key-740-0001"}
        post = running.http.post
        answers = [
            await post("/contracts/PHV-740/moves", json=move("Neue 1"), headers=headers),
            await post("/contracts/PHV-741/moves", json=move("Neue 1"), headers=headers),
            await post("/contracts/PHV-740/moves", json=move("Neue 1"), headers=headers),
            await post("/contracts/PHV-740/moves", json=move("Andere 2"), headers=headers),
        ]
        assert [a.status_code for a in answers] == [204, 204, 204, 422], answers[0].text
        assert answers[3].json()["title"] == "idempotency_key_reused"
        for number in ("PHV-740", "PHV-741"):
            assert await event_types(running, number) == ["PolicyIssued", "MoveReported"]


MOVES_750 = "/contracts/PHV-750/moves"


async def test_ct4_six_concurrent_identical_moves_never_answer_500_twenty_rounds() -> None:
    """Issue 7 item 7: double clicks over real HTTP; each round records one move."""
    async with contracts_service() as running:
        await moves_ready(running, "noah", "PHV-750")
        async with running.served() as base_url, httpx.AsyncClient(base_url=base_url) as http:
            statuses: Counter[int] = Counter()
            for round_ in range(20):
                headers = running.customer("noah") | {"Idempotency-Key": f"key-750-{round_:04d}"}
                body = move(f"Str. {round_}")
                answers = await asyncio.gather(
                    *(http.post(MOVES_750, json=body, headers=headers) for _ in range(6))
                )
                statuses.update(a.status_code for a in answers)
                odd = [a.text for a in answers if a.status_code != 204]
                assert not odd, odd
        assert statuses == Counter({204: 120})
        moves = [t for t in await event_types(running, "PHV-750") if t == "MoveReported"]
        assert len(moves) == 20


# --------------------------------------------------------------------------- item 10


ROUTES = {
    "/internal/upstream/policies": "policies",
    "/internal/upstream/payments": "payments",
    "/internal/upstream/cancellations": "policies",
    "/internal/upstream/policyholder-changes": "policies",
}
GRANTS = {"policy-admin": {"policies"}, "collections": {"payments"}, "operators": set()}


def intake_body(route: str, system: str, number: str) -> dict[str, Any]:
    common = {"message_id": uuid.uuid4().hex, "source_system": system, "occurred_at": NOW}
    message: upstream.UpstreamMessage
    if route.endswith("policies"):
        message = issued(number, ("olga",)).model_copy(update=common)
    elif route.endswith("payments"):
        message = paid(number).model_copy(update=common)
    elif route.endswith("cancellations"):
        message = upstream.PolicyCancelledUpstream(
            policy_number=number, effective_date=date(2026, 12, 31), **common
        )
    else:
        message = upstream.PolicyholdersChangedUpstream(
            policy_number=number, policyholder_ids=("olga", "paul"),
            effective_date=date(2026, 12, 1), **common,
        )  # fmt: skip
    return body(message)


@pytest.mark.parametrize("system", sorted(GRANTS))
async def test_each_system_may_call_only_the_intake_operations_it_owns(system: str) -> None:
    """Issue 7 item 10: every system x every route -> 2xx when granted, else 403."""
    async with contracts_service() as running:
        number = f"AUTH-{system}".upper()
        if "policies" not in GRANTS[system]:
            issue = intake_body("/internal/upstream/policies", "policy-admin", number)
            await running.http.post(
                "/internal/upstream/policies", json=issue, headers=running.system("policy-admin")
            )
        for route in ROUTES:
            answer = await running.http.post(
                route, json=intake_body(route, system, number), headers=running.system(system)
            )
            expected = 201 if ROUTES[route] in GRANTS[system] else 403
            assert answer.status_code == expected, (route, answer.text)
            if expected == 403:
                assert answer.headers["content-type"] == "application/problem+json"


# --------------------------------------------------------------------------- item 12


async def test_the_api_keeps_its_openapi_promises() -> None:
    """Issue 7 item 12: schemathesis against contracts' OpenAPI, a valid customer token
    and each internal route with the credentials of the system that owns it; bounded."""
    async with contracts_service() as running:
        await moves_ready(running, "dora", "PHV-760")

        def auth(method: str, path: str) -> dict[str, str]:
            if path == "/internal/upstream/payments":
                return running.system("collections")
            if path.startswith("/internal/"):
                return running.system("policy-admin")
            return running.customer("dora")

        async with running.served() as base_url:
            failures = await asyncio.to_thread(api_failures, base_url, auth=auth, max_examples=10)
        assert failures == [], "\n".join(str(f) for f in failures)
