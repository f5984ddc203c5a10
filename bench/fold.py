"""3. and 4. Consumers folding a topic of PremiumPaid CloudEvents through the stream
entrypoint every service uses, `servicekit.stream.EventStream` (a FastStream batch
subscriber: decode, inbox, handler and inbox rows in one transaction per batch, then the
offset commit), against a raw aiokafka consumer of the same fetch settings
(`at_least_once_consumer`) that only counts the records of the same topic.

3: a trivial projection handler, one row per event in one multi-row INSERT per batch.
4: the loyalty service's own handler, `Loyalty.record_facts`, on its PostgreSQL unit of
   work, into a schema migrated with services/loyalty/migrations.

Every run uses a fresh topic and a fresh consumer group reading from the earliest offset
until it has N records. The group's members settle on the topic while it is still empty
and pause; the topic is filled; the timer starts when they resume (joining and
rebalancing are not timed). 3 runs with one member; 4 as loyalty is configured
(`kafka_consumers_per_group`: one), then with a member per partition in the one process.
The raw consumer then reads the same topic. The timed runs, raw and subject alike, are
on a frozen heap with the collector's threshold of a service process (`frozen_heap`).
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
from loyalty.config import LoyaltySettings
from loyalty.domain.config import LoyaltyConfig
from loyalty.handlers import Loyalty
from servicekit.clock import SystemClock
from servicekit.db import Connection, migrations_in
from servicekit.eventstore import EventStore
from servicekit.kafka import at_least_once_consumer, ensure_topics
from servicekit.postgres import PostgresUnitOfWork, postgres_transactions
from servicekit.settings import ServiceSettings
from servicekit.stream import BATCH_RECORDS, EventStream
from servicekit.testing import unique
from servicekit.unit_of_work import UnitOfWork

from bench.common import (
    PARTITIONS,
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
LOYALTY_FOLD = "EventStream + Loyalty.record_facts"
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
            batch = await consumer.getmany(timeout_ms=200, max_records=BATCH_RECORDS)
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
    pool: asyncpg.Pool,
    unit_of_work: Callable[[Connection], U],
    settings: ServiceSettings,
    fill: Callable[[str], Awaitable[object]],
    count: int,
    handler: Handler[U],
    profile: str | None = None,
) -> tuple[str, Timed]:
    """A fresh topic, and how long the `EventStream` subscriber of a fresh group takes to
    handle the `count` events `fill(topic)` produces to it, from the moment its members,
    settled and paused while it was filled, resume."""
    topic, group = unique("bench_fold"), unique("bench_fold")
    await ensure_topics(settings.kafka_bootstrap, [topic])
    stream = EventStream(settings, postgres_transactions(pool, unit_of_work))
    stream.subscriber(group, topic)(handler)
    deadline = deadline_for(count)
    await stream.start()
    try:
        members = _members(stream, group)
        await until(lambda: _settled(members), deadline, f"{group} to settle")
        for member in members:
            member.pause(*member.assignment())
        await fill(topic)
        with profiled(profile):
            started, cpu = time.perf_counter(), time.process_time()
            for member in members:
                member.resume(*member.assignment())
            # Polled every 10 ms, not 2: the wake-ups are CPU of this process, which the
            # raw consume (a plain loop that ends when it is done) does not pay.
            await until(
                lambda: _handled(stream) >= count, deadline, f"{group} to fold {count}", 0.01
            )
            timed = Timed(time.perf_counter() - started, time.process_time() - cpu)
    finally:
        await stream.close()
    duplicates = sum(inbox.duplicates for inbox in stream.consumers)
    dead_letters = sum(inbox.dead_lettered for inbox in stream.consumers)
    if duplicates or dead_letters:
        raise BenchFailure(f"{duplicates} duplicates, {dead_letters} dead letters in {group}")
    return topic, timed


def _members(stream: EventStream[Any], group: str) -> list[Any]:
    """The aiokafka consumers behind the stream's members of `group` (once started)."""
    subscribers = [s for s in stream.broker.subscribers if getattr(s, "group_id", "") == group]
    return [cast(Any, subscriber).consumer for subscriber in subscribers]


def _settled(members: Sequence[Any]) -> bool:
    """Every member holds partitions, and together exactly the topic's: one generation."""
    held = [len(member.assignment()) for member in members]
    return all(held) and sum(held) == PARTITIONS


def _handled(stream: EventStream[Any]) -> int:
    return sum(i.applied + i.duplicates + i.dead_lettered for i in stream.consumers)


async def run(dsn: str, bootstrap: str, events: int) -> list[Row]:
    factory = PremiumPaidFactory()
    filled = 0

    def filling(count: int) -> Callable[[str], Awaitable[object]]:
        nonlocal filled
        first, filled = filled, filled + count
        return lambda topic: fill_topic(bootstrap, topic, factory, count, first=first)

    rows: list[Row] = []
    store = EventStore("/bench")

    def kit_unit_of_work(conn: Connection) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(conn, store)

    settings = stream_settings(bootstrap)
    async with bench_schema(dsn, "bench_fold", []) as (_schema, pool):
        await pool.execute(
            "CREATE TABLE projection (event_id text PRIMARY KEY, policy_id text NOT NULL,"
            " amount_cents bigint NOT NULL)"
        )
        await fold(pool, kit_unit_of_work, settings, filling(WARM), WARM, project)
        say(f"fold: {events} PremiumPaid events, trivial projection")
        with frozen_heap():
            topic, timed = await fold(
                pool, kit_unit_of_work, settings, filling(events), events, project,
                "fold_projection",
            )  # fmt: skip
            raw = await raw_consume(bootstrap, topic, events)
        stored = await count_rows(pool, "projection")
        if stored != WARM + events:
            raise BenchFailure(f"projection has {stored} rows, expected {WARM + events}")
        rows.append(_row("3 consumer fold", "EventStream + trivial projection", events,
                         timed, raw))  # fmt: skip
        projection = timed

    # As the service is configured, then with a member per partition (if that differs).
    configured = LoyaltySettings().kafka_consumers_per_group
    for members in dict.fromkeys((configured, PARTITIONS)):
        name = (
            LOYALTY_FOLD if members == configured else f"  same, {members} members in one process"
        )
        timed, raw = await _loyalty_fold(dsn, bootstrap, events, members, filling)
        rows.append(
            _row("4 loyalty fold", name, events, timed, raw, LOYALTY_AIM, projection, members)
        )
    return rows


async def _loyalty_fold(
    dsn: str,
    bootstrap: str,
    events: int,
    members: int,
    filling: Callable[[int], Callable[[str], Awaitable[object]]],
) -> tuple[Timed, Timed]:
    """The loyalty fold with `members` members of the group, and the raw consume."""
    settings = LoyaltySettings(
        kafka_bootstrap=bootstrap, instance_id=unique("bench"), kafka_consumers_per_group=members
    )
    async with bench_schema(dsn, "bench_loyalty", migrations_in(MIGRATIONS)) as (_, pool):
        loyalty = Loyalty(LoyaltyConfig(), SystemClock())
        loyalty_store = EventStore("/loyalty")

        def loyalty_uow(conn: Connection) -> Any:
            return loyalty_unit_of_work(conn, loyalty_store)

        await fold(pool, loyalty_uow, settings, filling(WARM), WARM, loyalty.record_facts)
        say(f"fold: {events} PremiumPaid events, loyalty, {members} member(s)")
        with frozen_heap():
            topic, timed = await fold(
                pool, loyalty_uow, settings, filling(events), events, loyalty.record_facts,
                f"fold_loyalty_{members}",
            )  # fmt: skip
            raw = await raw_consume(bootstrap, topic, events)
        stored = await count_rows(pool, "facts")
        if stored != WARM + events:
            raise BenchFailure(f"facts has {stored} rows, expected {WARM + events}")
    return timed, raw


def _row(
    section: str,
    name: str,
    events: int,
    timed: Timed,
    raw: Timed,
    aim: float = AIM,
    projection: Timed | None = None,
    members: int = 1,
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
        f" {raw_cpu_us:.0f} us; fresh topic and group each, {members} member(s), earliest,"
        f" batches of up to {BATCH_RECORDS}, same consumer settings",
    )
    result["met"] = result["events_per_s"] >= aim
    result["cpu_us_per_event"] = round(cpu_us)
    result["baseline_cpu_us_per_event"] = round(raw_cpu_us)
    return result
