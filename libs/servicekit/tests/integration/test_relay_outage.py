"""The outbox relay across a lost database connection (issue 13's chaos run found every
relay dying with PostgreSQL): a lost connection is lost leadership, the relay backs off and
stands for election again, and the advisory lock keeps it to one leader at a time.

The lost connection is the one a PostgreSQL restart takes first: the leader's lock session,
ended by the server (`pg_terminate_backend`, the same AdminShutdown a restart sends)."""

from __future__ import annotations

import asyncio
import zlib

import asyncpg
import pytest
from kit_factories import premium_paid
from kit_running import settings, started, stream_on
from servicekit.eventstore import EventStore
from servicekit.outbox import OutboxRelay
from servicekit.testing import read_topic, unique, until

pytestmark = pytest.mark.integration

_LOCK_HOLDER = """
SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = $1::bigint::oid
"""


async def lock_holders(dsn: str, key: int) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [row["pid"] for row in await conn.fetch(_LOCK_HOLDER, key)]
    finally:
        await conn.close()


async def end_session(dsn: str, pid: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def append(pool: asyncpg.Pool, store: EventStore, tag: str) -> str:
    event = premium_paid(f"pol-{tag}", 1)
    async with pool.acquire() as conn, conn.transaction():
        await store.append(conn, event.aggregate_id, 0, [event])
    return str(event.event_id)


async def drained(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        return not await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")


async def test_relays_outlive_a_lost_database_connection_and_one_of_them_leads_again(
    pool: asyncpg.Pool, dsn: str, bootstrap: str
) -> None:
    topic = unique("test.relay-outage")
    store = EventStore("/test", topic_for=lambda _: topic)
    key = zlib.crc32(topic.encode())
    stop = asyncio.Event()
    async with started(stream_on(pool, settings(bootstrap))) as stream:
        relays = [
            OutboxRelay(pool, stream.publish, send=stream.send, lock_key=key) for _ in range(2)
        ]
        running = [asyncio.create_task(relay.run(stop)) for relay in relays]
        try:
            ids = [await append(pool, store, "before")]
            await until(lambda: drained(pool), within=60)
            for outage in range(2):
                (leader,) = await until(lambda: lock_holders(dsn, key), within=60)
                await end_session(dsn, leader)
                ids.append(await append(pool, store, f"after-{outage}"))
                await until(lambda: drained(pool), within=60)
                assert not any(task.done() for task in running), "a relay died with its session"
            assert len(await lock_holders(dsn, key)) == 1, "one leader, elected again"
        finally:
            stop.set()
            await asyncio.gather(*running)
    on_topic = await read_topic(bootstrap, topic, at_least=len(ids))
    assert {dict(r.headers)["ce_id"].decode() for r in on_topic} == set(ids)
    assert sum(relay.published for relay in relays) >= len(ids)
