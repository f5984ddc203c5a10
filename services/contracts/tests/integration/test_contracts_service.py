"""The contracts service against the real broker and database (CT-1..CT-4)."""

from __future__ import annotations

import pytest
from contracts_harness import Running, activated, contracts_service, issued, paid
from servicekit.testing import header, read_topic

pytestmark = pytest.mark.integration

POLICY_TOPIC = "portal.contracts.policy.v1"


async def events_on_policy_topic(running: Running, at_least: int) -> list[str]:
    records = await read_topic(
        running.service.runtime.settings.kafka_bootstrap,
        running.prefix + POLICY_TOPIC,
        at_least=at_least,
        wait_seconds=15,
    )
    return [header(r, "ce_type") or "" for r in records]


async def test_ct1_the_same_upstream_message_delivered_twice_on_kafka_has_one_effect() -> None:
    async with contracts_service() as running:
        message = issued("PHV-100", ("anna",), message_id="pa-0001")
        await running.publish(message, message, paid("PHV-100"))
        published = await events_on_policy_topic(running, at_least=2)
        assert [t.rsplit(".", 2)[-2] for t in published] == ["PolicyIssued", "PremiumPaid"]
        async with running.service.runtime.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM events") == 2


async def test_ct1_kafka_batches_decide_on_what_http_intake_recorded_in_between() -> None:
    """The stream's intake keeps the policy states it folded and reads only the events
    after them: a payment recorded over HTTP since is seen (the same payment again has no
    second effect), and the next one is appended after it."""
    async with contracts_service() as running:
        await running.publish(issued("PHV-150", ("anna",)))
        assert await events_on_policy_topic(running, at_least=1)
        first = paid("PHV-150")
        answer = await running.http.post(
            "/internal/upstream/payments",
            json=first.model_dump(mode="json"),
            headers=running.system("collections"),
        )
        assert answer.status_code == 201
        again = first.model_copy(update={"message_id": "co-again"})
        await running.publish(again, paid("PHV-150"))
        published = await events_on_policy_topic(running, at_least=3)
        assert [t.rsplit(".", 2)[-2] for t in published] == [
            "PolicyIssued", "PremiumPaid", "PremiumPaid",
        ]  # fmt: skip
        async with running.service.runtime.pool.acquire() as conn:
            versions = await conn.fetch("SELECT stream_version FROM events ORDER BY 1")
            recorded = await conn.fetchval(
                "SELECT count(*) FROM idempotency_records WHERE scope = 'upstream:collections'"
            )
        assert [r["stream_version"] for r in versions] == [1, 2, 3]
        assert recorded == 3


async def test_ct1_an_unrecordable_upstream_message_is_dead_lettered_with_its_reason() -> None:
    async with contracts_service() as running:
        await running.publish(paid("UNKNOWN-1"), issued("PHV-200", ("ben",)))
        dead = await read_topic(
            running.service.runtime.settings.kafka_bootstrap,
            running.prefix + "portal.dlq.contracts.upstream-ingestion",
            at_least=1,
        )
        assert len(dead) == 1
        assert (header(dead[0], "x-dlq-reason") or "").startswith("policy_not_found")
        assert await events_on_policy_topic(running, at_least=1), "later messages still apply"


async def test_ct1_http_intake_is_idempotent_and_refuses_bad_input_with_a_problem() -> None:
    async with contracts_service() as running:
        body = issued("PHV-300", ("carl",)).model_dump(mode="json")
        first = await running.http.post(
            "/internal/upstream/policies", json=body, headers=running.system("policy-admin")
        )
        again = await running.http.post(
            "/internal/upstream/policies", json=body, headers=running.system("policy-admin")
        )
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["duplicate"] is True

        no_credentials = await running.http.post("/internal/upstream/policies", json=body)
        wrong_secret = await running.http.post(
            "/internal/upstream/policies",
            json=body,
            headers=running.system("policy-admin", "guess"),
        )
        impersonating = await running.http.post(
            "/internal/upstream/policies", json=body, headers=running.system("collections")
        )
        invalid = await running.http.post(
            "/internal/upstream/payments",
            json={"policy_number": "PHV-300"},
            headers=running.system("collections"),
        )
        wrong_carrier = await running.http.post(
            "/internal/upstream/policies",
            json=body | {"message_id": "other", "policy_number": "X-1", "carrier": "allvest"},
            headers=running.system("policy-admin"),
        )
        answers = (no_credentials, wrong_secret, impersonating, invalid, wrong_carrier)
        assert [r.status_code for r in answers] == [401, 401, 403, 422, 422]
        for refused in (no_credentials, invalid, wrong_carrier):
            assert refused.headers["content-type"] == "application/problem+json"
        assert wrong_carrier.json()["title"] == "carrier_mismatch"


async def test_ct3_only_the_sole_policyholder_sees_the_contract_and_strangers_learn_nothing() -> (
    None
):
    async with contracts_service() as running:
        await running.publish(activated("dora"), activated("emil"), activated("fritz"))
        await running.publish(issued("PHV-400", ("dora",)), issued("PHV-401", ("emil", "fritz")))

        async def dora_sees_one() -> list[dict[str, object]]:
            response = await running.http.get("/contracts", headers=running.customer("dora"))
            found: list[dict[str, object]] = response.json()
            return found

        mine = await running.until(dora_sees_one)
        assert [c["policy_number"] for c in mine] == ["PHV-400"]
        details = await running.http.get("/contracts/PHV-400", headers=running.customer("dora"))
        assert details.status_code == 200
        assert details.json()["coverage"]["tariff"] == "Privathaftpflicht Best"

        stranger = await running.http.get("/contracts/PHV-400", headers=running.customer("emil"))
        assert stranger.status_code == 404
        assert stranger.headers["content-type"] == "application/problem+json"

        why = await running.http.get(
            "/contracts/visibility",
            params={"policy_number": "PHV-401"},
            headers=running.customer("emil"),
        )
        assert why.json()["reason"] == "joint_policyholders"
        assert "mehrere Versicherungsnehmer" in why.json()["explanation"]
        unknown = await running.http.get(
            "/contracts/visibility",
            params={"policy_number": "PHV-400"},
            headers=running.customer("emil"),
        )
        assert unknown.json()["reason"] == "not_yet_issued", "a stranger cannot tell it exists"


async def test_ct4_bank_details_cannot_change_without_a_confirmed_mtan() -> None:
    async with contracts_service() as running:
        await running.publish(activated("gina"), issued("PHV-500", ("gina",)))

        async def visible() -> bool:
            response = await running.http.get(
                "/contracts/PHV-500", headers=running.customer("gina")
            )
            return response.status_code == 200

        await running.until(visible)
        change = {"iban": "DE89 3704 0044 0532 0130 00", "mtan_id": "mtan-1"}
        refused = await running.http.put(
            "/contracts/PHV-500/bank-details", json=change, headers=running.customer("gina")
        )
        assert refused.status_code == 403
        assert refused.json()["title"] == "mtan_required"
        bad_iban = await running.http.put(
            "/contracts/PHV-500/bank-details",
            json=change | {"iban": "DE89 3704 0044 0532 0130 01"},
            headers=running.customer("gina"),
        )
        assert bad_iban.status_code == 422
        assert bad_iban.json()["title"] == "iban_wrong_checksum"
