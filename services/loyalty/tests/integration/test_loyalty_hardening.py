"""Issue 7 against the real broker and database: simultaneous decisions never double-spend
or answer 500, runs never publish the future, only operators run jobs, and the API keeps
its OpenAPI promises."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from loyalty_harness import (
    Running,
    berlin,
    history_of_two_customers,
    loyalty_service,
    premium_paid,
    registered,
)
from servicekit.apitest import api_failures
from servicekit.testing import required_env

pytestmark = pytest.mark.integration

CUSTOMERS = 20
AT_ONCE = 6


async def customers_with_300_points(running: Running, prefix: str) -> list[str]:
    """Registered 2 January, enrolled 3 January, 300 EUR paid 15 January: 300 points
    credited by the February run (LOY-2); the clock is then 2 February."""
    customers = [f"{prefix}-{n:02d}" for n in range(CUSTOMERS)]
    await running.publish(*[registered(c, berlin(2026, 1, 2)) for c in customers])
    running.clock.set(berlin(2026, 1, 3, 9))
    await running.until(running.all_consumed)
    for customer in customers:
        response = await running.http.post("/loyalty/enrolment", headers=running.customer(customer))
        assert response.status_code == 201, response.text
    await running.publish(
        *[premium_paid(f"KFZ-{c}", (c,), 30_000, berlin(2026, 1, 15), 2) for c in customers]
    )
    running.clock.set(berlin(2026, 2, 2, 12))
    await running.until(running.all_consumed)
    for customer in customers:
        assert (await running.statement(customer))["balance"] == 300
    return customers


async def at_once(requests: list[Any]) -> list[httpx.Response]:
    return list(await asyncio.gather(*requests))


def unbacked(statement: dict[str, Any]) -> list[int]:
    return [
        e["reason"]["unbacked_points"]
        for e in statement["history"]
        if e["kind"] == "redemption" and e["reason"]["unbacked_points"]
    ]


async def test_six_simultaneous_redemptions_never_spend_the_same_points_twice() -> None:
    """Issue 7 item 6 (LOY-6): 300 points, six redemptions of a 250-point reward at once,
    each with its own redemption id: one succeeds, five are refused, 50 points remain."""
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        customers = await customers_with_300_points(running, "spender")
        for customer in customers:
            answers = await at_once(
                [
                    running.http.post(
                        "/loyalty/redemptions",
                        headers=running.customer(customer),
                        json={"reward_id": "tickets", "redemption_id": f"{customer}-try-{n}"},
                    )
                    for n in range(AT_ONCE)
                ]
            )
            statuses = Counter(a.status_code for a in answers)
            assert statuses[201] == 1, (customer, statuses, [a.text for a in answers])
            assert set(statuses) <= {201, 409, 422}, (customer, statuses)
            statement = await running.statement(customer)
            assert statement["balance"] == 50, (customer, statement["history"])
            assert len([e for e in statement["history"] if e["kind"] == "redemption"]) == 1
            assert unbacked(statement) == [], (customer, statement["history"])


async def test_six_simultaneous_enrolments_answer_one_201_and_never_500() -> None:
    """Issue 7 item 7 (LOY-1): a double click is a 409, not a 500."""
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        customers = [f"clicker-{n:02d}" for n in range(CUSTOMERS)]
        await running.publish(*[registered(c, berlin(2026, 1, 2)) for c in customers])
        running.clock.set(berlin(2026, 1, 3, 9))
        await running.until(running.all_consumed)
        for customer in customers:
            answers = await at_once(
                [
                    running.http.post("/loyalty/enrolment", headers=running.customer(customer))
                    for _ in range(AT_ONCE)
                ]
            )
            statuses = Counter(a.status_code for a in answers)
            assert statuses == Counter({201: 1, 409: AT_ONCE - 1}), (customer, statuses)
            assert (await running.statement(customer))["membership"]["status"] == "enrolled"


async def test_six_simultaneous_redemptions_with_one_id_redeem_once_and_never_500() -> None:
    """Issue 7 item 7 (LOY-6): the same redemption id six times at once is one redemption."""
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        customers = await customers_with_300_points(running, "retrier")
        for customer in customers:
            answers = await at_once(
                [
                    running.http.post(
                        "/loyalty/redemptions",
                        headers=running.customer(customer),
                        json={"reward_id": "tickets", "redemption_id": f"{customer}-once"},
                    )
                    for _ in range(AT_ONCE)
                ]
            )
            statuses = Counter(a.status_code for a in answers)
            assert statuses == Counter({201: 1, 409: AT_ONCE - 1}), (customer, statuses)
            statement = await running.statement(customer)
            assert statement["balance"] == 50
            assert unbacked(statement) == []


async def test_a_run_for_a_business_date_after_the_service_clock_is_refused_over_http() -> None:
    """Issue 7 item 11: business time 15 April 2026; a run for 2030 publishes nothing."""
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        await history_of_two_customers(running)
        running.clock.set(berlin(2026, 4, 15, 12))
        await running.until(running.all_consumed)
        before = await running.outbox_rows_queued()

        refused = await running.http.post(
            "/internal/loyalty/jobs/expiry", params={"business_date": "2030-01-01"},
            headers=running.operator,
        )  # fmt: skip

        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "after the service's business date 2026-04-15" in refused.json()["detail"]
        assert await running.outbox_rows_queued() == before, "nothing announced"
        today = await running.http.post(
            "/internal/loyalty/jobs/expiry", params={"business_date": "2026-04-15"},
            headers=running.operator,
        )  # fmt: skip
        assert today.status_code == 200, today.text


async def test_a_run_for_a_business_date_after_the_service_clock_is_refused_by_the_cli(
    tmp_path: Path,
) -> None:
    """Issue 7 item 11, OPS-3: `loyalty run` refuses it too, with the reason."""
    async with loyalty_service(berlin(2026, 1, 2, 12)) as running:
        await history_of_two_customers(running)
        running.clock.set(berlin(2026, 4, 15, 12))
        await running.until(running.all_consumed)
        before = await running.outbox_rows_queued()
        clock_file = tmp_path / "clock"
        clock_file.write_text(berlin(2026, 4, 15, 12).isoformat())
        settings = running.service.settings
        env = {
            **os.environ,
            "PORTAL_DATABASE_URL": required_env("PORTAL_DATABASE_URL"),
            "PORTAL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "PORTAL_DATABASE_SCHEMA": settings.schema_name,
            "PORTAL_TOPIC_PREFIX": settings.topic_prefix,
            "PORTAL_CLOCK_FILE": str(clock_file),
        }
        command = [str(Path(sys.executable).parent / "loyalty"), "run", "--kind", "expiry"]

        refused = await asyncio.to_thread(
            subprocess.run, [*command, "--date", "2030-01-01"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "after the service's business date 2026-04-15" in " ".join(refused.stdout.split())
        assert await running.outbox_rows_queued() == before, "nothing announced"


@pytest.mark.parametrize(
    ("system", "status"), [("operators", 200), ("collections", 403), ("policy-admin", 403)]
)
async def test_only_the_operators_may_run_jobs(system: str, status: int) -> None:
    """Issue 7 item 10 (OWASP API5): the jobs operation belongs to the operators."""
    async with loyalty_service(berlin(2026, 4, 15, 12)) as running:
        for kind, day in (("monthly", "2026-04-01"), ("january", "2026-01-01"),
                          ("expiry", "2026-04-15")):  # fmt: skip
            response = await running.http.post(
                f"/internal/loyalty/jobs/{kind}", params={"business_date": day},
                headers=running.system(system),
            )  # fmt: skip
            assert response.status_code == status, response.text
        anonymous = await running.http.post(
            "/internal/loyalty/jobs/monthly", params={"business_date": "2026-04-01"}
        )
        assert anonymous.status_code == 401


async def test_the_api_keeps_its_openapi_promises() -> None:
    """Issue 7 item 12: schemathesis against loyalty's own OpenAPI document, with a valid
    token (customer routes) or the operators' credentials (internal routes), bounded."""
    async with loyalty_service(berlin(2026, 4, 15, 12)) as running:
        await history_of_two_customers(running)
        running.clock.set(berlin(2026, 4, 15, 12))
        await running.until(running.all_consumed)

        def auth(method: str, path: str) -> dict[str, str]:
            return running.operator if path.startswith("/internal/") else running.customer("anna")

        async with running.served() as base_url:
            failures = await asyncio.to_thread(api_failures, base_url, auth=auth, max_examples=15)

        assert failures == [], "\n".join(str(f) for f in failures)
