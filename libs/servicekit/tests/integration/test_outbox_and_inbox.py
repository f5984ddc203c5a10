"""Outbox relay and the stream's inbox consumer against the real Kafka broker and PostgreSQL.

Crashes are simulated where they hurt most: between the broker's acknowledgement and
marking rows sent (deleting them), and between the database commit and the offset commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from contracts_schemas.cloudevents import encode
from faststream.kafka.message import KafkaAckableMessage
from kit_factories import premium_paid
from kit_running import (
    consuming,
    effects,
    handled,
    running,
    settings,
    started,
    stream_on,
    until,
)
from servicekit.eventstore import EventStore
from servicekit.kafka import OutgoingRecord, publish_all
from servicekit.outbox import OutboxRelay
from servicekit.postgres import PostgresUnitOfWork, postgres_transactions
from servicekit.testing import read_topic, unique

pytestmark = pytest.mark.integration


class Crash(Exception):
    """Stands for the process dying at this point."""


async def store_events(pool: asyncpg.Pool, store: EventStore, count: int) -> list[str]:
    events = [premium_paid(f"pol-{i}", 1, amount_cents=100 * (i + 1)) for i in range(count)]
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await store.append(conn, event.aggregate_id, 0, [event])
    return [str(e.event_id) for e in events]


async def test_relay_publishes_pending_events_in_order_and_deletes_them_once_sent(
    pool: asyncpg.Pool, bootstrap: str
) -> None:
    topic = unique("test.relay")
    store = EventStore("/test", topic_for=lambda _: topic)
    events = [premium_paid("pol-same-key", v) for v in range(1, 21)]
    async with pool.acquire() as conn, conn.transaction():
        await store.append(conn, "pol-same-key", 0, events)

    async with started(stream_on(pool, settings(bootstrap))) as stream:
        relay = OutboxRelay(pool, stream.publish, lock_key=1)
        assert await relay.publish_pending() == 20
        assert await relay.publish_pending() == 0
        assert await relay.backlog() == 0
    records = await read_topic(bootstrap, topic, at_least=20)
    assert [r.key for r in records] == [b"pol-same-key"] * 20
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [str(e.event_id) for e in events]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0, "sent rows are deleted"
    assert await pool.fetchval("SELECT count(*) FROM events") == 20, "the events stay"


async def test_rows_an_earlier_relay_marked_sent_are_not_sent_again(
    pool: asyncpg.Pool, bootstrap: str
) -> None:
    """A rolling upgrade: the relay of the previous version marked rows by setting
    `published_at`; this one skips them (the purge removes them after seven days)."""
    topic = unique("test.relay-upgrade")
    store = EventStore("/test", topic_for=lambda _: topic)
    ids = await store_events(pool, store, 4)
    await pool.execute(
        "UPDATE outbox SET published_at = now() WHERE event_id = ANY($1::text[])", ids[:2]
    )

    async with started(stream_on(pool, settings(bootstrap))) as stream:
        assert await OutboxRelay(pool, stream.publish, lock_key=4).publish_pending() == 2
    records = await read_topic(bootstrap, topic, at_least=2)
    assert [dict(r.headers)["ce_id"].decode() for r in records] == ids[2:]


async def test_relay_killed_after_publishing_before_marking_sent_yields_exactly_one_effect(
    pool: asyncpg.Pool, bootstrap: str
) -> None:
    topic = unique("test.relay-crash")
    store = EventStore("/test", topic_for=lambda _: topic)
    ids = await store_events(pool, store, 5)

    async with started(stream_on(pool, settings(bootstrap))) as publishing:

        async def publish_then_die(records: Sequence[OutgoingRecord]) -> None:
            await publishing.publish(records)
            raise Crash

        with pytest.raises(Crash):
            await OutboxRelay(pool, publish_then_die, lock_key=2).publish_pending()
        restarted = OutboxRelay(pool, publishing.publish, lock_key=2)
        assert await restarted.publish_pending() == 5, "unmarked rows are published again"

    on_topic = await read_topic(bootstrap, topic, at_least=10)
    assert len(on_topic) == 10, "the broker really holds every event twice"
    stream, consumer = consuming(pool, settings(bootstrap), unique("g"), topic)
    async with started(stream):
        await until(lambda: handled(consumer) == 10)
    rows = await effects(pool)
    assert sorted(r["event_id"] for r in rows) == sorted(ids)
    assert consumer.duplicates == 5


async def test_consumer_killed_after_db_commit_before_offset_commit_has_no_second_effect(
    pool: asyncpg.Pool, bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique("test.consumer-crash")
    store = EventStore("/test", topic_for=lambda _: topic)
    await store_events(pool, store, 5)
    async with started(stream_on(pool, settings(bootstrap))) as publishing:
        await OutboxRelay(pool, publishing.publish, lock_key=3).publish_pending()
    group, instance = unique("g"), unique("instance")

    died = asyncio.Event()

    async def die_instead_of_committing(_message: KafkaAckableMessage) -> None:
        died.set()
        raise Crash

    # The offset commit of a batch is its message's `ack()`: the process dies right there,
    # after the database transaction, every time it gets there.
    monkeypatch.setattr(KafkaAckableMessage, "ack", die_instead_of_committing)
    first, first_consumer = consuming(pool, settings(bootstrap, instance=instance), group, topic)
    async with started(first):
        await until(lambda: first_consumer.applied == 5 and died.is_set())
    assert len(await effects(pool)) == 5, "the effect committed before the crash"
    monkeypatch.undo()

    second, consumer = consuming(pool, settings(bootstrap, instance=instance), group, topic)
    async with started(second):
        await until(lambda: consumer.duplicates == 5)
    assert len(await effects(pool)) == 5, "re-delivered events were absorbed by the inbox"
    assert consumer.applied == 0


async def test_poison_messages_go_to_the_dead_letter_topic_with_a_reason_and_later_ones_still_apply(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    topic = unique("test.poison")
    good_before, good_after = premium_paid("p1", 1), premium_paid("p2", 1, amount_cents=500)
    valid = encode(good_before, "/test")
    unknown = encode(good_before, "/test")
    records = [
        OutgoingRecord(topic, "p1", valid.data, valid.headers()),
        OutgoingRecord(topic, "p1", b"\x00 not json", []),
        OutgoingRecord(
            topic,
            "p1",
            unknown.data,
            [
                (k, b"de.portal.contracts.Unheard.v1" if k == "ce_type" else v)
                for k, v in unknown.headers()
            ],
        ),
        OutgoingRecord(
            topic,
            "p1",
            b'{"event_id": "not-a-uuid"}',
            [
                (k, b"00000000-0000-0000-0000-000000000001" if k == "ce_id" else v)
                for k, v in valid.headers()
            ],
        ),
        OutgoingRecord(
            topic, "p1", encode(good_after, "/test").data, encode(good_after, "/test").headers()
        ),
    ]
    await publish_all(producer, records)
    group = unique("g")

    stream, consumer = consuming(pool, settings(bootstrap), group, topic)
    async with started(stream):
        await until(lambda: consumer.applied == 2 and consumer.dead_lettered == 3)

    assert [r["amount"] for r in await effects(pool)] == [1000, 500]
    dead = await read_topic(bootstrap, f"portal.dlq.{group}", at_least=3)
    reasons = [dict(r.headers)["x-dlq-reason"].decode() for r in dead]
    assert len(dead) == 3
    assert "missing CloudEvents attributes" in reasons[0] or "specversion" in reasons[0]
    assert "unknown event type" in reasons[1]
    assert "schema violation" in reasons[2]
    assert {dict(r.headers)["x-dlq-original-topic"].decode() for r in dead} == {topic}
    assert [int(dict(r.headers)["x-dlq-original-offset"]) for r in dead] == [1, 2, 3]


async def test_a_committed_append_of_this_process_wakes_the_idle_relay(
    pool: asyncpg.Pool, bootstrap: str
) -> None:
    """An hour's idle interval: only the store's `queued`, set by the commit, can make
    the relay publish the second event now (the first one it finds when it starts)."""
    topic = unique("test.relay-wake")
    store = EventStore("/test", topic_for=lambda _: topic)
    transactions = postgres_transactions(pool, lambda conn: PostgresUnitOfWork(conn, store))

    def appending(policy: str) -> Callable[[PostgresUnitOfWork], Awaitable[None]]:
        async def work(uow: PostgresUnitOfWork) -> None:
            await uow.events.append(policy, 0, [premium_paid(policy, 1)])

        return work

    await transactions.run(appending("pol-first"))
    async with started(stream_on(pool, settings(bootstrap))) as stream:
        relay = OutboxRelay(
            pool, stream.publish, send=stream.send, lock_key=5, idle_interval=3600,
            queued=store.queued,
        )  # fmt: skip
        async with running(relay.run):
            await until(lambda: relay.published == 1)
            await transactions.run(appending("pol-second"))
            await until(lambda: relay.published == 2)
    records = await read_topic(bootstrap, topic, at_least=2)
    assert sorted(r.key for r in records) == [b"pol-first", b"pol-second"]


async def test_only_a_committed_transaction_that_queued_rows_sets_the_stores_queued(
    pool: asyncpg.Pool,
) -> None:
    store = EventStore("/test")
    transactions = postgres_transactions(pool, lambda conn: PostgresUnitOfWork(conn, store))

    async def append_then_fail(uow: PostgresUnitOfWork) -> None:
        await uow.events.append("pol-rolled-back", 0, [premium_paid("pol-rolled-back", 1)])
        raise Crash

    async def queue_nothing(uow: PostgresUnitOfWork) -> None:
        await uow.events.stream_version("pol-any")
        await uow.events.append("pol-any", 0, [])

    with pytest.raises(Crash):
        await transactions.run(append_then_fail)
    await transactions.run(queue_nothing)
    assert not store.queued.is_set()

    async def enqueue(uow: PostgresUnitOfWork) -> None:
        await uow.events.enqueue([premium_paid("pol-enqueued", 1)])

    await transactions.run(enqueue)
    assert store.queued.is_set()
