"""End to end through the real broker and database: upstream systems publish, the
contracts service records, the loyalty service folds, customers read their statements."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from e2e_factories import (
    account_activated,
    account_cancelled,
    policy_issued,
    premium_paid,
    registered,
)
from e2e_harness import Platform, eventually

pytestmark = pytest.mark.e2e

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def statement(platform: Platform, customer: str) -> dict[str, Any]:
    with platform.as_customer("loyalty", customer) as client:
        response = client.get("/loyalty/statement")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _with_balance_and_pending(body: dict[str, Any]) -> dict[str, Any] | None:
    """January's and February's 120 points each credited, March's still pending."""
    return body if body["balance"] == 2 * 120 and len(body["pending"]) == 1 else None


def why_not_visible(platform: Platform, customer: str, number: str) -> str | None:
    """CT-3 as the customer asks it; also tells whether the policy reached contracts."""
    with platform.as_customer("contracts", customer) as client:
        response = client.get("/contracts/visibility", params={"policy_number": number})
    assert response.status_code == 200, response.text
    reason: str | None = response.json()["reason"]
    return reason


async def test_joint_policyholders_both_earn_premium_points_and_a_cancelled_account_loses_its_own(
    test_key_platform: Platform, publish_with_test_key: Any
) -> None:
    """CT-1, LOY-2, LOY-7, LOY-9, LOY-10: the walking skeleton and the joint-holder story.

    Without identity: its events come from the test, tokens from the test's own key (the
    journeys with identity's tokens are in test_customer_journeys.py)."""
    platform, publish = test_key_platform, publish_with_test_key
    anna, ben = f"cust-{uuid.uuid4().hex[:8]}", f"cust-{uuid.uuid4().hex[:8]}"
    number = f"HR-{uuid.uuid4().hex[:8].upper()}"
    platform.set_time(berlin(2027, 1, 10, 9, 0))
    await publish(
        "/identity", registered(anna, berlin(2027, 1, 5)), registered(ben, berlin(2027, 1, 5))
    )
    await publish("/identity", account_activated(anna, berlin(2027, 1, 6)))

    for customer in (anna, ben):

        def enrolled(customer: str = customer) -> bool:
            with platform.as_customer("loyalty", customer) as client:
                response = client.post("/loyalty/enrolment")
            assert response.status_code in (201, 422), response.text
            return response.status_code == 201

        eventually(enrolled)  # waits until identity's registration reached loyalty

    # Policy administration publishes on Kafka; collections uses Kafka and the HTTP API.
    await publish(
        "/policy-admin", policy_issued(number, (anna, ben), date(2027, 1, 1), berlin(2027, 1, 11))
    )
    await publish(
        "/collections",
        premium_paid(number, 12_050, berlin(2027, 1, 15, 10)),
        premium_paid(number, 12_050, berlin(2027, 2, 28, 23, 59)),
    )
    eventually(lambda: why_not_visible(platform, anna, number) == "joint_policyholders")

    march = premium_paid(number, 12_050, berlin(2027, 3, 15, 10))
    with platform.as_system("contracts", "collections") as collections:
        first = collections.post("/internal/upstream/payments", json=march.model_dump(mode="json"))
        again = collections.post("/internal/upstream/payments", json=march.model_dump(mode="json"))
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True, "CT-1: the same message twice has one effect"

    platform.set_time(berlin(2027, 3, 31, 12, 0))  # February and March runs are done
    for customer in (anna, ben):
        # The March payment came over HTTP and may reach loyalty before January's and
        # February's from Kafka: wait for the whole state that is asserted.
        now = eventually(lambda c=customer: _with_balance_and_pending(statement(platform, c)))
        assert now["balance"] == 2 * 120, "LOY-2: 120.50 EUR earn 120 points, credited next month"
        assert now["pending"][0]["run_on"] == "2027-04-01"

    platform.set_time(berlin(2027, 4, 1, 12, 0))  # after the February, March and April runs
    with platform.as_system("loyalty", "operators") as operators:
        for run in ("2027-02-01", "2027-03-01", "2027-04-01"):
            response = operators.post(
                "/internal/loyalty/jobs/monthly", params={"business_date": run}
            )
            assert response.status_code == 200, response.text

    anna_statement, ben_statement = statement(platform, anna), statement(platform, ben)
    assert anna_statement["balance"] == ben_statement["balance"] == 3 * 120
    assert [lot["expires_on"] for lot in anna_statement["lots"]] == ["2030-12-31"] * 3
    assert {e["reason"]["policy_id"] for e in anna_statement["history"]} == {number}

    with platform.as_customer("contracts", anna) as client:
        contracts = client.get("/contracts")
    assert contracts.status_code == 200
    assert contracts.json() == [], "CT-3: joint policyholders do not see the contract"

    await publish("/identity", account_cancelled(anna, berlin(2027, 4, 2, 8, 0)))
    platform.set_time(berlin(2027, 4, 2, 12, 0))
    eventually(lambda: statement(platform, anna)["membership"]["status"] == "ended")
    assert statement(platform, anna)["balance"] == 0, "LOY-9: every point forfeited"
    assert statement(platform, ben)["balance"] == 360, "the other holder keeps theirs"
