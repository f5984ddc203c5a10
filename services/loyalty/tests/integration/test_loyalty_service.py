"""The loyalty service against the real broker and database."""

from __future__ import annotations

from typing import Any

import pytest
from loyalty.entrypoints.rebuild import rebuild_facts
from loyalty.entrypoints.stream import INPUT_TOPICS
from loyalty_harness import (
    berlin,
    history_of_two_customers,
    loyalty_service,
)
from servicekit.testing import header, read_whole_topic

pytestmark = pytest.mark.integration


async def test_loy12_rebuilding_from_the_topics_gives_exactly_the_same_statements() -> None:
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        anna, ben = await history_of_two_customers(running)
        running.clock.set(berlin(2027, 1, 2, 12))

        await running.until(running.all_consumed)  # every fact of both histories is stored
        live = {c: await running.statement(c) for c in (anna, ben)}
        # LOY-2 (3 x 99) + LOY-4 (1000) + LOY-3 in January 2027 (11th year: 1000)
        assert live[anna]["balance"] == 3 * 99 + 1000 + 1000
        assert live[ben]["balance"] == 0, "LOY-9: the cancelled account forfeited everything"

        # The service's own decisions must be on its topic before the topics are the truth.
        await running.until(running.outbox_drained)
        topics = [running.prefix + t for t in INPUT_TOPICS]
        service = running.service
        replayed = await rebuild_facts(
            service.transactions, service.loyalty, service.settings.kafka_bootstrap, topics
        )
        assert replayed >= 10
        assert {c: await running.statement(c) for c in (anna, ben)} == live


async def test_a_run_announces_each_credit_once_however_often_it_runs() -> None:
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        anna, _ = await history_of_two_customers(running)
        running.clock.set(berlin(2026, 4, 1, 12))
        await running.until(running.all_consumed)
        for _ in range(2):
            response = await running.http.post(
                "/internal/loyalty/jobs/monthly", params={"business_date": "2026-04-01"},
                headers=running.operator,
            )  # fmt: skip
            assert response.status_code == 200, response.text

        await running.until(running.outbox_drained)  # all both runs queued is on the topic
        published = await read_whole_topic(
            running.service.settings.kafka_bootstrap, running.prefix + "portal.loyalty.account.v1"
        )
        credited = [r for r in published if (header(r, "ce_type") or "").endswith("Credited.v1")]
        anna_credits = [r for r in credited if header(r, "ce_subject") == f"account-{anna}"]
        assert len(anna_credits) == 4, "3 premium lots and the e-mail-instead-of-letter bonus"


async def test_loy6_a_shortfall_is_paid_for_where_the_reward_allows_and_never_goes_negative() -> (
    None
):
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        anna, _ = await history_of_two_customers(running)
        running.clock.set(berlin(2026, 4, 1, 12))
        await running.until(running.all_consumed)
        balance = (await running.statement(anna))["balance"]
        assert balance == 1000 + 3 * 99

        redeem = await running.http.post(
            "/loyalty/redemptions", headers=running.customer(anna),
            json={"reward_id": "cinema-voucher", "redemption_id": "redemption-0001"},
        )  # fmt: skip
        assert redeem.status_code == 201, redeem.text
        assert redeem.json() == {
            "redemption_id": "redemption-0001", "reward_id": "cinema-voucher",
            "points": balance, "co_payment_cents": (1500 - balance) * 1,
        }  # fmt: skip
        again = await running.http.post(
            "/loyalty/redemptions", headers=running.customer(anna),
            json={"reward_id": "cinema-voucher", "redemption_id": "redemption-0001"},
        )  # fmt: skip
        assert again.status_code == 409, "a retried redemption is not redeemed twice"
        assert (await running.statement(anna))["balance"] == 0

        refused = await running.http.post(
            "/loyalty/redemptions", headers=running.customer(anna),
            json={"reward_id": "charity-donation", "redemption_id": "redemption-0002"},
        )  # fmt: skip
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert "Zuzahlung" in refused.json()["detail"]


async def test_loy6_points_can_be_neither_bought_nor_transferred() -> None:
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        paths = (await running.http.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if any(w in p for w in ("buy", "purchase", "transfer"))]


async def test_statements_need_a_token_and_show_only_the_callers_own_points() -> None:
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        assert (await running.http.get("/loyalty/statement")).status_code == 401
        body = await running.statement("someone-else")
        assert body["customer_id"] == "someone-else"
        assert body["balance"] == 0


def redemptions_in(statement: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in statement["history"] if e["kind"] == "redemption"]
