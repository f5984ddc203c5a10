"""3. and 4. Consumers folding a topic of PremiumPaid CloudEvents through
`servicekit.consumer.InboxConsumer` (decode, inbox, handler and inbox rows in one
transaction per batch, then the offset commit), against a raw aiokafka consumer of the
same settings (`at_least_once_consumer`) that only counts the records of the same topic.

3: a trivial projection handler, one row per event in one multi-row INSERT per batch.
4: the loyalty service's own handler, `Loyalty.record_facts`, into a schema migrated with
   services/loyalty/migrations.

Every run uses a fresh consumer group reading from the earliest offset until it has N
records; the timer starts once the group assigned the partitions (joining is not timed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaProducer
from contracts_schemas.contracts import PremiumPaid
from loyalty.bootstrap import MIGRATIONS
from loyalty.domain.config import LoyaltyConfig
from loyalty.handlers import Loyalty
from servicekit.consumer import Delivery, Handler, InboxConsumer
from servicekit.db import Connection, migrations_in
from servicekit.eventstore import EventStore
from servicekit.kafka import at_least_once_consumer, ensure_topics, reliable_producer
from servicekit.testing import unique

from bench.common import (
    BenchFailure,
    PremiumPaidFactory,
    Row,
    bench_schema,
    count_rows,
    deadline_for,
    fill_topic,
    profiled,
    row,
    say,
    until,
    wait_assigned,
)

AIM = 10_000.0
WARM = 3_000

_PROJECT = """
INSERT INTO projection (event_id, policy_id, amount_cents)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
"""


async def project(conn: Connection, deliveries: Sequence[Delivery]) -> None:
    """The trivial projection: one row per event, one statement per batch."""
    paid = [d.message for d in deliveries if isinstance(d.message, PremiumPaid)]
    await conn.execute(
        _PROJECT,
        [str(m.event_id) for m in paid],
        [m.policy_id for m in paid],
        [m.amount_cents for m in paid],
    )


async def raw_consume(bootstrap: str, topic: str, count: int) -> float:
    """Seconds a fresh group of the raw client takes to get `count` records."""
    consumer = at_least_once_consumer(bootstrap, unique("bench_raw"), [topic])
    await consumer.start()
    try:
        deadline = deadline_for(count)
        await wait_assigned(consumer, deadline)
        seen = 0
        started = time.perf_counter()
        while seen < count:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            seen += sum(len(records) for records in batch.values())
            if time.perf_counter() > deadline:
                raise BenchFailure(f"raw consumer saw {seen}/{count}")
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def fold(
    bootstrap: str,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    topic: str,
    count: int,
    handler: Handler,
    profile: str | None = None,
) -> tuple[float, InboxConsumer]:
    """Seconds `InboxConsumer.run` of a fresh group takes to handle `count` events."""
    group = unique("bench_fold")
    kafka = at_least_once_consumer(bootstrap, group, [topic])
    await kafka.start()
    try:
        inbox = InboxConsumer(
            name=group, consumer=kafka, producer=producer, pool=pool, handler=handler
        )
        deadline = deadline_for(count)
        await wait_assigned(kafka, deadline)
        stop = asyncio.Event()
        finished = 0.0

        def handled() -> int:
            return inbox.processed + inbox.duplicates + inbox.dead_lettered

        async def watch() -> None:
            nonlocal finished
            try:
                await until(lambda: handled() >= count, deadline, f"{group} to fold {count}")
                finished = time.perf_counter()
            finally:
                stop.set()

        with profiled(profile):
            started = time.perf_counter()
            await asyncio.gather(inbox.run(stop), watch())
        if inbox.duplicates or inbox.dead_lettered:
            raise BenchFailure(
                f"{inbox.duplicates} duplicates, {inbox.dead_lettered} dead letters in {group}"
            )
        return finished - started, inbox
    finally:
        await kafka.stop()


async def run(dsn: str, bootstrap: str, events: int) -> list[Row]:
    topic, warm_topic = unique("bench_fold"), unique("bench_fold_warm")
    await ensure_topics(bootstrap, [topic, warm_topic])
    factory = PremiumPaidFactory()
    await fill_topic(bootstrap, warm_topic, factory, WARM)
    say(f"fold: producing {events} PremiumPaid events")
    filled = await fill_topic(bootstrap, topic, factory, events, first=WARM)
    say(f"fold: produced in {filled:.2f} s")
    rows: list[Row] = []
    producer = reliable_producer(bootstrap, "bench-fold")  # dead letters only (none expected)
    await producer.start()
    try:
        async with bench_schema(dsn, "bench_fold", []) as (_schema, pool):
            await pool.execute(
                "CREATE TABLE projection (event_id text PRIMARY KEY, policy_id text NOT NULL,"
                " amount_cents bigint NOT NULL)"
            )
            await fold(bootstrap, pool, producer, warm_topic, WARM, project)
            raw = await raw_consume(bootstrap, topic, events)
            seconds, _ = await fold(
                bootstrap, pool, producer, topic, events, project, "fold_projection"
            )
            stored = await count_rows(pool, "projection")
            if stored != WARM + events:
                raise BenchFailure(f"projection has {stored} rows, expected {WARM + events}")
            rows.append(_row("3 consumer fold", "InboxConsumer + trivial projection", events,
                             seconds, raw))  # fmt: skip

        async with bench_schema(dsn, "bench_loyalty", migrations_in(MIGRATIONS)) as (_, pool):
            loyalty = Loyalty(EventStore("/loyalty"), LoyaltyConfig())
            await fold(bootstrap, pool, producer, warm_topic, WARM, loyalty.record_facts)
            raw = await raw_consume(bootstrap, topic, events)
            seconds, _ = await fold(
                bootstrap, pool, producer, topic, events, loyalty.record_facts, "fold_loyalty"
            )
            stored = await count_rows(pool, "facts")
            if stored != WARM + events:
                raise BenchFailure(f"facts has {stored} rows, expected {WARM + events}")
            rows.append(_row("4 loyalty fold", "InboxConsumer + Loyalty.record_facts", events,
                             seconds, raw))  # fmt: skip
    finally:
        await producer.stop()
    return rows


def _row(section: str, name: str, events: int, seconds: float, raw_seconds: float) -> Row:
    result = row(
        section,
        name,
        events=events,
        seconds=seconds,
        baseline="raw aiokafka consume (count only)",
        baseline_events=events,
        baseline_seconds=raw_seconds,
        aim=f">= {AIM:,.0f} events/s",
        note="fresh group each, earliest, batches of up to 1000, same consumer settings",
    )
    result["met"] = result["events_per_s"] >= AIM
    return result
