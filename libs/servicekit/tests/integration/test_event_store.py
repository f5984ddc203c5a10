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


async def test_append_many_stores_every_stream_in_one_statement_in_the_order_given(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await STORE.append(conn, "m-old", 0, [premium_paid("m-old", 1)])
    appends = [
        ("m-new", 0, [premium_paid("m-new", 1), premium_paid("m-new", 2)]),
        ("m-old", 1, [premium_paid("m-old", 2)]),
        ("m-empty", 7, []),
    ]
    async with pool.acquire() as conn, conn.transaction():
        await STORE.append_many(conn, appends)
    async with pool.acquire() as conn:
        assert [e.stream_version for e in await STORE.read_stream(conn, "m-new")] == [1, 2]
        assert await STORE.stream_version(conn, "m-old") == 2
        queued = await conn.fetch("SELECT event_id FROM outbox ORDER BY id")
    expected = [str(e.event_id) for _, _, events in appends for e in events]
    assert [r["event_id"] for r in queued][1:] == expected, "outbox order = order given"


async def test_append_many_with_one_stream_moved_names_it_and_writes_nothing(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await STORE.append(conn, "m-moved", 0, [premium_paid("m-moved", 1)])
    with pytest.raises(ConcurrencyConflict) as conflict:
        async with pool.acquire() as conn, conn.transaction():
            await STORE.append_many(
                conn,
                [
                    ("m-fine", 0, [premium_paid("m-fine", 1)]),
                    ("m-moved", 0, [premium_paid("m-moved", 1)]),
                ],
            )
    assert (conflict.value.stream_id, conflict.value.actual_version) == ("m-moved", 1)
    async with pool.acquire() as conn:
        assert await STORE.stream_version(conn, "m-fine") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1


async def test_append_many_racing_a_writer_on_one_of_its_streams_names_that_stream(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as first, pool.acquire() as second:
        async with first.transaction():
            await STORE.append(first, "m-race", 0, [premium_paid("m-race", 1)])
            racing = asyncio.create_task(_append_many_in_tx(second))
            await asyncio.sleep(0.1)  # the second statement waits on the first's row
        with pytest.raises(ConcurrencyConflict) as conflict:
            await racing
    assert conflict.value.stream_id == "m-race"
    async with pool.acquire() as conn:
        assert await STORE.stream_version(conn, "m-other") == 0
        assert len(await STORE.read_stream(conn, "m-race")) == 1


async def _append_many_in_tx(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await STORE.append_many(
            conn,
            [
                ("m-other", 0, [premium_paid("m-other", 1)]),
                ("m-race", 0, [premium_paid("m-race", 1)]),
            ],
        )


async def test_append_many_refuses_a_stream_named_twice(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(ValueError, match="twice"):
            await STORE.append_many(
                conn,
                [("m-2x", 0, [premium_paid("m-2x", 1)]), ("m-2x", 1, [premium_paid("m-2x", 2)])],
            )


async def test_an_event_is_stored_once_its_outbox_row_names_it(pool: asyncpg.Pool) -> None:
    event = premium_paid("lean", 1)
    async with pool.acquire() as conn, conn.transaction():
        await STORE.append(conn, "lean", 0, [event])
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM outbox")
    assert row is not None
    assert (row["event_ref"], row["event_id"], row["source"]) == (
        event.event_id,
        str(event.event_id),
        "/test",
    )
    assert row["payload"] is None, "the body is read from events"
    assert row["headers"] is None, "the envelope is built from events"
