"""LOY-12 on PostgreSQL: facts are stored once per customer they concern, the first
version wins, and they read back as they were stored - for a decision's single fact (one
INSERT) and for a consumer's or a replay's batch (copied through a staging table)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from loyalty.adapters.postgres import COPY_FROM, PostgresFacts
from loyalty.bootstrap import MIGRATIONS
from loyalty.domain import facts as f
from loyalty.domain.facts import CustomerFact
from servicekit.db import create_pool, drop_schema, migrate, migrations_in
from servicekit.testing import required_env, unique

pytestmark = pytest.mark.integration

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@asynccontextmanager
async def facts_schema() -> AsyncIterator[asyncpg.Pool]:
    dsn, schema = required_env("PORTAL_DATABASE_URL"), unique("loyalty_facts")
    try:
        await migrate(dsn, schema, migrations_in(MIGRATIONS))
        pool = await create_pool(dsn, schema, max_size=1)
        try:
            yield pool
        finally:
            await pool.close()
    finally:
        await drop_schema(dsn, schema)


def payment(n: int, holders: tuple[str, ...] = ("c1",), cents: int = 10_000) -> f.PremiumPaid:
    return f.PremiumPaid(
        f"pay-event-{n}", AT + timedelta(minutes=n), f"pay-{n}", "P1", "motor", True, cents, holders
    )


class Failed(Exception):
    pass


async def failing_transaction(
    conn: asyncpg.Connection, facts: PostgresFacts, rows: list[CustomerFact]
) -> None:
    async with conn.transaction():
        await facts.add(rows)
        raise Failed


async def test_loy12_facts_of_one_fact_and_of_a_batch_are_stored_once_and_read_back() -> None:
    policy = f.PolicyIssued("issued-1", AT, "P1", "motor", True, ("c1", "c2"), date(2026, 1, 1))
    single: list[CustomerFact] = [("c1", payment(0)), ("c1", payment(0, cents=2))]
    batch: list[CustomerFact] = [("c1", payment(n)) for n in range(1, 2 * COPY_FROM)]
    batch += [("c1", policy), ("c2", policy), ("c1", payment(0, cents=1))]  # 0: stored before
    batch += [("c1", payment(n, cents=n + 1)) for n in range(1, 2 * COPY_FROM)]  # later versions

    async with facts_schema() as pool, pool.acquire() as conn:
        facts = PostgresFacts(conn)
        async with conn.transaction():
            await facts.add(single)
        with pytest.raises(Failed):  # a batch whose transaction fails leaves nothing behind
            await failing_transaction(
                conn, facts, [("c3", payment(n, ("c3",))) for n in range(2 * COPY_FROM)]
            )
        async with conn.transaction():  # the same session again, after that rollback
            await facts.add(batch)
            await facts.add(batch)  # twice in one transaction: still once each

        c1, c2, c3 = [await facts.account(c) for c in ("c1", "c2", "c3")]

    expected = {payment(n) for n in range(2 * COPY_FROM)} | {policy}
    assert set(c1.facts) == expected
    assert len(c1.facts) == len(expected)
    assert c2.facts == (policy,)
    assert c3.facts == ()
    assert all(x.amount_cents == 10_000 for x in c1.facts if isinstance(x, f.PremiumPaid)), (
        "LOY-12: the first version of a fact stays, within a batch as across batches"
    )
