"""Event store on the real PostgreSQL: appends, reads, optimistic concurrency."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from kit_factories import premium_paid
from servicekit.eventstore import ConcurrencyConflict, EventStore

pytestmark = pytest.mark.integration

STORE = EventStore("/test")


async def test_appended_events_read_back_in_stream_order(pool: asyncpg.Pool) -> None:
    events = [premium_paid("pol-1", v) for v in (1, 2, 3)]
    async with pool.acquire() as conn, conn.transaction():
        await STORE.append(conn, "pol-1", 0, events)
    async with pool.acquire() as conn:
        stored = await STORE.read_stream(conn, "pol-1")
        outbox = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    assert [e.event_id for e in stored] == [e.event_id for e in events]
    assert [e.stream_version for e in stored] == [1, 2, 3]
    assert stored[0].event_type == "de.portal.contracts.PremiumPaid.v1"
    assert outbox == 3, "every stored event is queued for publishing in the same transaction"


async def test_two_concurrent_writers_at_the_same_version_exactly_one_wins(
    pool: asyncpg.Pool,
) -> None:
    start = asyncio.Event()

    async def writer() -> str:
        async with pool.acquire() as conn, conn.transaction():
            version = await STORE.stream_version(conn, "pol-race")
            await start.wait()
            await STORE.append(conn, "pol-race", version, [premium_paid("pol-race", version + 1)])
            await asyncio.sleep(0.05)  # hold the transaction open while the other writes
        return "won"

    tasks = [asyncio.create_task(writer()) for _ in range(2)]
    await asyncio.sleep(0.05)
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert results.count("won") == 1
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(conflicts) == 1
    assert conflicts[0].stream_id == "pol-race"
    async with pool.acquire() as conn:
        assert len(await STORE.read_stream(conn, "pol-race")) == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1


async def test_append_at_a_stale_version_is_a_conflict_and_writes_nothing(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await STORE.append(conn, "pol-2", 0, [premium_paid("pol-2", 1), premium_paid("pol-2", 2)])
    with pytest.raises(ConcurrencyConflict):
        async with pool.acquire() as conn, conn.transaction():
            await STORE.append(conn, "pol-2", 1, [premium_paid("pol-2", 2)])
    async with pool.acquire() as conn:
        assert await STORE.stream_version(conn, "pol-2") == 2
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 2


async def test_global_position_orders_events_across_streams(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await STORE.append(conn, "a", 0, [premium_paid("a", 1)])
        await STORE.append(conn, "b", 0, [premium_paid("b", 1)])
    async with pool.acquire() as conn:
        everything = await STORE.read_all(conn)
        assert [e.stream_id for e in everything] == ["a", "b"]
        assert await STORE.global_position(conn) == everything[-1].global_position
