"""A broker restart in the middle of a stream of events: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import pytest
from kit_factories import premium_paid
from kit_running import consuming, effects, eventually, running, settings, started
from servicekit.eventstore import EventStore
from servicekit.outbox import OutboxRelay
from servicekit.testing import unique

pytestmark = pytest.mark.integration

PLATFORM = Path(__file__).resolve().parents[4] / "deploy" / "local" / "platform"
TOTAL = 300


async def restart_kafka() -> None:
    process = await asyncio.create_subprocess_exec(
        str(PLATFORM), "restart-kafka", env=os.environ.copy()
    )
    assert await process.wait() == 0, "the launcher could not restart the broker"


async def append_slowly(pool: asyncpg.Pool, store: EventStore, first: int, last: int) -> None:
    for i in range(first, last):
        event = premium_paid(f"pol-{i % 7}-{i}", 1, amount_cents=i + 1)
        async with pool.acquire() as conn, conn.transaction():
            await store.append(conn, event.aggregate_id, 0, [event])
        await asyncio.sleep(0.005)


async def test_broker_restart_during_a_stream_loses_nothing_and_doubles_nothing(
    pool: asyncpg.Pool, bootstrap: str
) -> None:
    if os.environ.get("PORTAL_KAFKA_EXTERNAL"):
        pytest.fail("this test restarts the broker, which needs the broker of deploy/local")
    topic = unique("test.restart")
    store = EventStore("/test", topic_for=lambda _: topic)
    stream, _ = consuming(pool, settings(bootstrap), unique("g"), topic)
    relay = OutboxRelay(pool, stream.publish, lock_key=9)
    async with started(stream), running(relay.run):
        await append_slowly(pool, store, 0, TOTAL // 3)
        restart = asyncio.create_task(restart_kafka())
        await append_slowly(pool, store, TOTAL // 3, TOTAL)
        await restart
        await eventually(lambda: _count_at_least(pool, TOTAL), within=180)

    rows = await effects(pool)
    assert len(rows) == TOTAL, "no event doubled"
    assert sum(r["amount"] for r in rows) == sum(range(1, TOTAL + 1)), "no event lost"
    assert await relay.backlog() == 0


async def _count_at_least(pool: asyncpg.Pool, count: int) -> bool:
    return len(await effects(pool)) >= count
