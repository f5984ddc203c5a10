"""The pipelined outbox relay on the real broker and PostgreSQL: rounds overlap, yet every
key keeps its order, a round is marked sent only once acknowledged, and a failed round
leaves itself and every later round unmarked."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from contracts_schemas.cloudevents import decode, encode, from_kafka
from kit_factories import premium_paid
from servicekit.eventstore import EventStore
from servicekit.kafka import OutgoingRecord, publish_all, send_all
from servicekit.outbox import OutboxRelay, read_pending
from servicekit.testing import read_topic, unique

pytestmark = pytest.mark.integration


async def unpublished(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch("SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id")
    return [r["id"] for r in rows]


async def test_pipelined_rounds_keep_every_keys_order_and_mark_everything_sent(
    pool: asyncpg.Pool, bootstrap: str, producer: AIOKafkaProducer
) -> None:
    topic = unique("test.relay-pipeline")
    store = EventStore("/test", topic_for=lambda _: topic)
    keys = [f"pol-{k}" for k in range(3)]
    async with pool.acquire() as conn, conn.transaction():
        await store.append_many(
            conn, [(key, 0, [premium_paid(key, v) for v in range(1, 41)]) for key in keys]
        )
        upstream = [premium_paid("pol-enqueued", 1)]
        await store.enqueue(conn, upstream)  # a whole record among the lean ones
    rounds: list[int] = []

    async def send(records: Sequence[OutgoingRecord]) -> Awaitable[object]:
        rounds.append(len(records))
        return await send_all(producer, records)

    relay = OutboxRelay(
        pool,
        functools.partial(publish_all, producer),
        send=send,
        lock_key=3,
        batch_size=7,
        pipeline_depth=4,
    )
    assert await relay.drain() == 121
    assert len(rounds) == 18, "121 rows in rounds of 7"
    assert await unpublished(pool) == []

    records = await read_topic(bootstrap, topic, at_least=121)
    messages = [decode(from_kafka(r.headers, r.value)) for r in records]
    for key in keys:
        versions = [m.aggregate_version for m in messages if m.aggregate_id == key]
        assert versions == list(range(1, 41)), "one key's events in stream order"
    assert [m for m in messages if m.aggregate_id == "pol-enqueued"] == upstream
    headers = dict(records[0].headers)
    assert headers["ce_source"] == b"/test"
    assert headers["ce_subject"] == records[0].key


async def test_a_failed_round_leaves_it_and_every_later_round_unmarked(
    pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    topic = unique("test.relay-pipeline-fail")
    store = EventStore("/test", topic_for=lambda _: topic)
    async with pool.acquire() as conn, conn.transaction():
        await store.append(conn, "pol-f", 0, [premium_paid("pol-f", v) for v in range(1, 31)])
    ids = await unpublished(pool)
    sent = 0

    async def send(records: Sequence[OutgoingRecord]) -> Awaitable[object]:
        nonlocal sent
        sent += 1
        acks = await send_all(producer, records)
        if sent != 2:
            return acks
        await acks  # round 2 reached the broker, but its acknowledgement fails

        async def refused() -> None:
            raise OSError("broker refused round 2")

        return asyncio.ensure_future(refused())

    relay = OutboxRelay(
        pool,
        functools.partial(publish_all, producer),
        send=send,
        lock_key=4,
        batch_size=5,
        pipeline_depth=3,
    )
    with pytest.raises(OSError, match="round 2"):
        await relay.drain()
    assert await unpublished(pool) == ids[5:], "round 1 marked; round 2 and later are not"
    assert relay.published == 5

    again = OutboxRelay(
        pool,
        functools.partial(publish_all, producer),
        send=functools.partial(send_all, producer),
        lock_key=4,
    )
    assert await again.drain() == 25
    assert await unpublished(pool) == []


async def test_a_lean_rows_record_carries_the_envelope_encode_makes(pool: asyncpg.Pool) -> None:
    """The relay builds an event's headers from its lean outbox row and the stored event
    (no envelope object per row): the same headers, in the same order, as `encode`."""
    store = EventStore("/test", topic_for=lambda _: "t")
    event = premium_paid("pol-envelope", 1)
    traceparent = f"00-{'a' * 32}-{'b' * 16}-01"
    async with pool.acquire() as conn, conn.transaction():
        await store.append(conn, "pol-envelope", 0, [event])
        await conn.execute("UPDATE outbox SET traceparent = $1", traceparent)
        _ids, (record,) = await read_pending(conn, 10)
    assert record.headers == encode(event, "/test", traceparent).headers()
    assert decode(from_kafka(record.headers, record.value)) == event


@pytest.mark.parametrize(
    "occurred_at",
    [
        datetime(2026, 3, 15, 10, 0, 0, 120, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 3, 15, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ],
)
async def test_a_lean_rows_time_header_is_the_stored_times_utc_isoformat(
    pool: asyncpg.Pool, occurred_at: datetime
) -> None:
    """`ce_time` of a relayed event is made by the read itself (no datetime per row): the
    stored time in UTC, exactly as `isoformat` writes it - microseconds only when there
    are any, `+00:00` - which is what the relay sent when it formatted it in Python."""
    store = EventStore("/test", topic_for=lambda _: "t")
    event = premium_paid("pol-time", 1).model_copy(update={"occurred_at": occurred_at})
    async with pool.acquire() as conn, conn.transaction():
        await store.append(conn, "pol-time", 0, [event])
        _ids, (record,) = await read_pending(conn, 10)
    times = [value for name, value in record.headers if name == "ce_time"]
    assert times == [occurred_at.astimezone(UTC).isoformat().encode()]


async def test_rows_filling_whole_rounds_exactly_are_all_marked_sent(
    pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """The round after the last full one is empty: the rounds still in flight are
    marked sent all the same (the next round's read is made while one is enqueued)."""
    topic = unique("test.relay-whole-rounds")
    store = EventStore("/test", topic_for=lambda _: topic)
    async with pool.acquire() as conn, conn.transaction():
        await store.append(conn, "pol-w", 0, [premium_paid("pol-w", v) for v in range(1, 21)])
    relay = OutboxRelay(
        pool,
        functools.partial(publish_all, producer),
        send=functools.partial(send_all, producer),
        lock_key=5,
        batch_size=5,
        pipeline_depth=2,
    )
    assert await relay.drain() == 20
    assert await unpublished(pool) == []
    assert relay.published == 20
    assert await relay.drain() == 0
