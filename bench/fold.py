"""3. and 4. Consumers folding a topic of PremiumPaid CloudEvents through the stream
entrypoint every service uses, `servicekit.stream.EventStream` (a FastStream batch
subscriber: decode, inbox, handler and inbox rows in one transaction per batch, then the
offset commit), against a raw aiokafka consumer of the same fetch settings
(`at_least_once_consumer`) that only counts the records of the same topic.

3: a trivial projection handler, one row per event in one multi-row INSERT per batch.
4: the loyalty service's own handler, `Loyalty.record_facts`, on its PostgreSQL unit of
   work, into a schema migrated with services/loyalty/migrations.

Every run uses a fresh consumer group reading from the earliest offset until it has N
records; the timer starts once the group assigned the partitions (joining is not timed).
The timed runs, raw and subject alike, are on a frozen heap with the collector's threshold
of a service process (`frozen_heap`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import asyncpg
from contracts_schemas.base import Contract
from contracts_schemas.contracts import PremiumPaid
from loyalty.bootstrap import MIGRATIONS
from loyalty.bootstrap import unit_of_work as loyalty_unit_of_work
from loyalty.domain.config import LoyaltyConfig
from loyalty.handlers import Loyalty
from servicekit.clock import SystemClock
from servicekit.db import Connection, migrations_in
from servicekit.eventstore import EventStore
from servicekit.kafka import at_least_once_consumer, ensure_topics
from servicekit.postgres import PostgresUnitOfWork, postgres_transactions
from servicekit.settings import ServiceSettings
from servicekit.stream import EventStream, InboxConsumer
from servicekit.testing import unique
from servicekit.unit_of_work import UnitOfWork

from bench.common import (
    BenchFailure,
    PremiumPaidFactory,
    Row,
    bench_schema,
    count_rows,
    deadline_for,
    fill_topic,
    frozen_heap,
    profiled,
    row,
    say,
    until,
    wait_assigned,
)

AIM = 10_000.0  # the trivial projection
LOYALTY_AIM = 25_000.0  # issue 12: the loyalty fold
WARM = 3_000

U = TypeVar("U", bound=UnitOfWork)
Handler = Callable[[Sequence[Contract], U], Awaitable[None]]

_PROJECT = """
INSERT INTO projection (event_id, policy_id, amount_cents)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
"""


async def project(messages: Sequence[Contract], uow: PostgresUnitOfWork) -> None:
    """The trivial projection: one row per event, one statement per batch."""
    paid = [m for m in messages if isinstance(m, PremiumPaid)]
    await uow.conn.execute(
        _PROJECT,
        [str(m.event_id) for m in paid],
        [m.policy_id for m in paid],
        [m.amount_cents for m in paid],
    )


@dataclass(frozen=True, slots=True)
class Timed:
    """Wall-clock seconds and this process's CPU seconds of one timed stretch (the CPU
    holds on a loaded machine, where the wall clock swings with what others run)."""

    seconds: float
    cpu_seconds: float


async def raw_consume(bootstrap: str, topic: str, count: int) -> Timed:
    """How long a fresh group of the raw client takes to get `count` records."""
    consumer = at_least_once_consumer(bootstrap, unique("bench_raw"), [topic])
    await consumer.start()
    try:
        deadline = deadline_for(count)
        await wait_assigned(consumer, deadline)
        seen = 0
        started, cpu = time.perf_counter(), time.process_time()
        while seen < count:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            seen += sum(len(records) for records in batch.values())
            if time.perf_counter() > deadline:
                raise BenchFailure(f"raw consumer saw {seen}/{count}")
        return Timed(time.perf_counter() - started, time.process_time() - cpu)
    finally:
        await consumer.stop()


def stream_settings(bootstrap: str) -> ServiceSettings:
    return ServiceSettings(
        service_name="bench", kafka_bootstrap=bootstrap, instance_id=unique("bench")
    )


async def fold(
    bootstrap: str,
    pool: asyncpg.Pool,
    unit_of_work: Callable[[Connection], U],
    topic: str,
    count: int,
    handler: Handler[U],
    profile: str | None = None,
) -> Timed:
    """How long the `EventStream` subscriber of a fresh group takes to handle `count`
    events, from the moment the group assigned it the partitions."""
    group = unique("bench_fold")
    stream = EventStream(stream_settings(bootstrap), postgres_transactions(pool, unit_of_work))
    stream.subscriber(group, topic)(handler)
    (inbox,) = stream.consumers
    deadline = deadline_for(count)
    await stream.start()
    try:
        kafka = _kafka_consumer(stream, group)
        await until(lambda: len(kafka.assignment()) > 0, deadline, "the group assignment")
        with profiled(profile):
            started, cpu = time.perf_counter(), time.process_time()
            # Polled every 10 ms, not 2: the wake-ups are CPU of this process, which the
            # raw consume (a plain loop that ends when it is done) does not pay.
            await until(
                lambda: _handled(inbox) >= count, deadline, f"{group} to fold {count}", 0.01
            )
            timed = Timed(time.perf_counter() - started, time.process_time() - cpu)
    finally:
        await stream.close()
    if inbox.duplicates or inbox.dead_lettered:
        raise BenchFailure(
            f"{inbox.duplicates} duplicates, {inbox.dead_lettered} dead letters in {group}"
        )
    return timed


def _kafka_consumer(stream: EventStream[Any], group: str) -> Any:
    """The aiokafka consumer behind the stream's subscriber of `group` (once started)."""
    (subscriber,) = (s for s in stream.broker.subscribers if getattr(s, "group_id", "") == group)
    return cast(Any, subscriber).consumer


def _handled(inbox: InboxConsumer[Any]) -> int:
    return inbox.applied + inbox.duplicates + inbox.dead_lettered


async def run(dsn: str, bootstrap: str, events: int) -> list[Row]:
    topic, warm_topic = unique("bench_fold"), unique("bench_fold_warm")
    await ensure_topics(bootstrap, [topic, warm_topic])
    factory = PremiumPaidFactory()
    await fill_topic(bootstrap, warm_topic, factory, WARM)
    say(f"fold: producing {events} PremiumPaid events")
    filled = await fill_topic(bootstrap, topic, factory, events, first=WARM)
    say(f"fold: produced in {filled:.2f} s")
    rows: list[Row] = []
    store = EventStore("/bench")

    def kit_unit_of_work(conn: Connection) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(conn, store)

    async with bench_schema(dsn, "bench_fold", []) as (_schema, pool):
        await pool.execute(
            "CREATE TABLE projection (event_id text PRIMARY KEY, policy_id text NOT NULL,"
            " amount_cents bigint NOT NULL)"
        )
        await fold(bootstrap, pool, kit_unit_of_work, warm_topic, WARM, project)
        with frozen_heap():
            raw = await raw_consume(bootstrap, topic, events)
            timed = await fold(
                bootstrap, pool, kit_unit_of_work, topic, events, project, "fold_projection"
            )
        stored = await count_rows(pool, "projection")
        if stored != WARM + events:
            raise BenchFailure(f"projection has {stored} rows, expected {WARM + events}")
        rows.append(_row("3 consumer fold", "EventStream + trivial projection", events,
                         timed, raw))  # fmt: skip
        projection = timed

    async with bench_schema(dsn, "bench_loyalty", migrations_in(MIGRATIONS)) as (_, pool):
        loyalty = Loyalty(LoyaltyConfig(), SystemClock())
        loyalty_store = EventStore("/loyalty")

        def loyalty_uow(conn: Connection) -> Any:
            return loyalty_unit_of_work(conn, loyalty_store)

        await fold(bootstrap, pool, loyalty_uow, warm_topic, WARM, loyalty.record_facts)
        with frozen_heap():
            raw = await raw_consume(bootstrap, topic, events)
            timed = await fold(
                bootstrap, pool, loyalty_uow, topic, events, loyalty.record_facts, "fold_loyalty"
            )
        stored = await count_rows(pool, "facts")
        if stored != WARM + events:
            raise BenchFailure(f"facts has {stored} rows, expected {WARM + events}")
        rows.append(_row("4 loyalty fold", "EventStream + Loyalty.record_facts", events,
                         timed, raw, LOYALTY_AIM, projection))  # fmt: skip
    return rows


def _row(
    section: str,
    name: str,
    events: int,
    timed: Timed,
    raw: Timed,
    aim: float = AIM,
    projection: Timed | None = None,
) -> Row:
    """With `projection`, the note also says how this run's time compares with the trivial
    projection's in the same run (both wait on the same PostgreSQL: steadier under load
    than the ratio to the raw consume, which waits on nothing)."""
    cpu_us, raw_cpu_us = timed.cpu_seconds / events * 1e6, raw.cpu_seconds / events * 1e6
    than_projection = ""
    if projection is not None:
        times = timed.seconds / projection.seconds
        than_projection = f"{times:.2f}x the trivial projection's time; "
    result = row(
        section,
        name,
        events=events,
        seconds=timed.seconds,
        baseline="raw aiokafka consume (count only)",
        baseline_events=events,
        baseline_seconds=raw.seconds,
        aim=f">= {aim:,.0f} events/s",
        note=f"{than_projection}CPU of this process per event: {cpu_us:.0f} us, raw"
        f" {raw_cpu_us:.0f} us; fresh group each, earliest, batches of up to 1000, same"
        " consumer settings",
    )
    result["met"] = result["events_per_s"] >= aim
    result["cpu_us_per_event"] = round(cpu_us)
    result["baseline_cpu_us_per_event"] = round(raw_cpu_us)
    return result
