"""5. A consumer close to the hardware: the stream entrypoint every service uses against
the honest physical baseline of the same work.

Both read the same topic of PremiumPaid CloudEvents with a fresh consumer group (earliest,
the same fetch settings, batches of up to the stream's `BATCH_RECORDS`), and per fetched
batch, in ONE transaction, write the inbox rows (consumer, CloudEvents source#id) and one
effect row per fresh event (event id, policy id, amount), then commit the offsets - the
same guarantees:

- baseline: raw aiokafka `getmany` + the envelope's id/source from the headers + the two
  body fields from `json.loads` + one unnest INSERT ... ON CONFLICT DO NOTHING RETURNING
  into `inbox` and one unnest INSERT of the fresh rows into `projection`, in one asyncpg
  transaction, then `commit()` of the offsets;
- subject: `servicekit.stream.EventStream` (FastStream batch subscriber: decode and
  validate with the contracts' pydantic models, dead letters, inbox, spans, the
  handler on the PostgreSQL unit of work, then the offset commit) with a trivial
  projection handler that writes the same effect rows in one statement per batch.

Every event carries a `traceparent` of its own, as real traffic does (one trace per
request upstream): the subject links its batch span to them, the baseline ignores them.

Each side runs in a schema of its own; the two alternate (baseline, subject, twice) and
the faster of each side's two runs is kept, so a burst of load on the shared machine hurts
one run rather than the figure. The timer starts once the group assigned the partitions.
The timed rounds run on a frozen heap (`gc.freeze()` after the warm-up, as a service
process freezes what start-up built), for both sides.
The note adds what load changes less: this process's CPU time per event on each side (the
event loop, the Kafka client and the driver all run in it), from the same runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from aiokafka import AIOKafkaConsumer
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from contracts_schemas.contracts import PremiumPaid
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.kafka import Headers, at_least_once_consumer, ensure_topics
from servicekit.postgres import PostgresUnitOfWork, postgres_transactions
from servicekit.settings import ServiceSettings
from servicekit.stream import BATCH_RECORDS, EventStream, InboxConsumer
from servicekit.testing import unique

from bench.common import (
    SOURCE,
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

SECTION = "5 consumer"
AIM_RATIO = 0.8
WARM = 2_000
ROUNDS = 2

_PROJECTION = (
    "CREATE TABLE projection (event_id text PRIMARY KEY, policy_id text NOT NULL,"
    " amount_cents bigint NOT NULL)"
)
_PROJECT = (
    "INSERT INTO projection (event_id, policy_id, amount_cents)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
)
_REMEMBER = (
    "INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::text[])"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


@dataclass(frozen=True, slots=True)
class Timed:
    """Wall-clock and this process's CPU seconds of one timed stretch."""

    seconds: float
    cpu_seconds: float


class _Watch:
    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def stop(self) -> Timed:
        return Timed(time.perf_counter() - self.wall, time.process_time() - self.cpu)


class TracedPremiumPaid(PremiumPaidFactory):
    """The shared factory's records, each with a trace context of its own."""

    def record(self, i: int) -> tuple[bytes, bytes, Headers]:
        key, value, headers = super().record(i)
        return key, value, [*headers, ("traceparent", self.traceparent(i).encode())]

    @staticmethod
    def traceparent(i: int) -> str:
        return f"00-{i + 1:032x}-{i + 1:016x}-01"

    def _check(self) -> None:
        """The records are byte for byte what `encode` makes of the model and its trace."""
        for i in (0, 1, 77_777):
            _key, value, headers = self.record(i)
            expected = encode(self.model(i), SOURCE, self.traceparent(i))
            assert (value, headers) == (expected.data, expected.headers())


# ---------------------------------------------------------------------------------------
# The baseline: raw aiokafka + raw asyncpg
# ---------------------------------------------------------------------------------------


def _envelope_key(headers: Sequence[tuple[str, bytes]]) -> str:
    source = event_id = ""
    for name, value in headers:
        if name == "ce_id":
            event_id = value.decode()
        elif name == "ce_source":
            source = value.decode()
    return f"{source}#{event_id}"


async def _write_raw(conn: Connection, group: str, records: Sequence[Any]) -> None:
    keys = [_envelope_key(r.headers) for r in records]
    bodies = [json.loads(r.value) for r in records]
    async with conn.transaction():
        fresh = {r["event_id"] for r in await conn.fetch(_REMEMBER, group, keys)}
        rows = [(b, k) for b, k in zip(bodies, keys, strict=True) if k in fresh]
        await conn.execute(
            _PROJECT,
            [b["event_id"] for b, _ in rows],
            [b["policy_id"] for b, _ in rows],
            [b["amount_cents"] for b, _ in rows],
        )


async def raw_consume_and_write(
    bootstrap: str, pool: asyncpg.Pool, topic: str, count: int
) -> Timed:
    """How long a fresh raw group takes to consume, write and commit `count` records."""
    group = unique("bench_raw_consumer")
    consumer: AIOKafkaConsumer = at_least_once_consumer(bootstrap, group, [topic])
    await consumer.start()
    try:
        deadline = deadline_for(count)
        await wait_assigned(consumer, deadline)
        seen = 0
        async with pool.acquire() as conn:
            watch = _Watch()
            while seen < count:
                fetched = await consumer.getmany(timeout_ms=200, max_records=BATCH_RECORDS)
                records = [r for batch in fetched.values() for r in batch]
                if records:
                    await _write_raw(conn, group, records)
                    await consumer.commit()
                    seen += len(records)
                if time.perf_counter() > deadline:
                    raise BenchFailure(f"raw consumer saw {seen}/{count}")
            return watch.stop()
    finally:
        await consumer.stop()


# ---------------------------------------------------------------------------------------
# The subject: EventStream + a trivial projection through the unit of work
# ---------------------------------------------------------------------------------------


async def project(messages: Sequence[Contract], uow: PostgresUnitOfWork) -> None:
    """The trivial projection: one row per event, one statement per batch."""
    paid = [m for m in messages if isinstance(m, PremiumPaid)]
    await uow.conn.execute(
        _PROJECT,
        [str(m.event_id) for m in paid],
        [m.policy_id for m in paid],
        [m.amount_cents for m in paid],
    )


async def stream_consume(
    bootstrap: str, pool: asyncpg.Pool, topic: str, count: int, profile: str | None = None
) -> Timed:
    """Seconds the `EventStream` subscriber of a fresh group takes to apply `count` events."""
    group = unique("bench_consumer")
    store = EventStore("/bench")

    def unit_of_work(conn: Connection) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(conn, store)

    settings = ServiceSettings(
        service_name="bench", kafka_bootstrap=bootstrap, instance_id=unique("bench")
    )
    stream = EventStream(settings, postgres_transactions(pool, unit_of_work))
    stream.subscriber(group, topic)(project)
    (inbox,) = stream.consumers
    deadline = deadline_for(count)
    await stream.start()
    try:
        subscribers = stream.broker.subscribers
        (subscriber,) = (s for s in subscribers if getattr(s, "group_id", "") == group)
        kafka = cast(Any, subscriber).consumer
        await until(lambda: len(kafka.assignment()) > 0, deadline, "the group assignment")
        with profiled(profile):
            watch = _Watch()
            # Polled every 10 ms, not 2: the wake-ups are CPU of this process, which the
            # baseline (a plain loop that ends when it is done) does not pay.
            await until(
                lambda: _handled(inbox) >= count, deadline, f"{group} to apply {count}", 0.01
            )
            timed = watch.stop()
    finally:
        await stream.close()
    if inbox.duplicates or inbox.dead_lettered:
        raise BenchFailure(
            f"{inbox.duplicates} duplicates, {inbox.dead_lettered} dead letters in {group}"
        )
    return timed


def _handled(inbox: InboxConsumer[Any]) -> int:
    return inbox.applied + inbox.duplicates + inbox.dead_lettered


# ---------------------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------------------


async def _fresh(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE inbox, projection")


async def _check(pool: asyncpg.Pool, expected: int, who: str) -> None:
    stored = await count_rows(pool, "projection")
    if stored != expected:
        raise BenchFailure(f"{who}: projection has {stored} rows, expected {expected}")


async def run(dsn: str, bootstrap: str, events: int) -> list[Row]:
    topic, warm_topic = unique("bench_consumer"), unique("bench_consumer_warm")
    await ensure_topics(bootstrap, [topic, warm_topic])
    factory = TracedPremiumPaid()
    await fill_topic(bootstrap, warm_topic, factory, WARM)
    say(f"consumer: producing {events} PremiumPaid events")
    await fill_topic(bootstrap, topic, factory, events, first=WARM)
    raw_runs: list[Timed] = []
    subject_runs: list[Timed] = []
    async with (
        bench_schema(dsn, "bench_consumer_raw", []) as (_, raw_pool),
        bench_schema(dsn, "bench_consumer_kit", []) as (_, kit_pool),
    ):
        for pool in (raw_pool, kit_pool):
            await pool.execute(_PROJECTION)
        await raw_consume_and_write(bootstrap, raw_pool, warm_topic, WARM)
        await stream_consume(bootstrap, kit_pool, warm_topic, WARM)
        with frozen_heap():
            await _rounds(bootstrap, topic, events, (raw_pool, kit_pool), raw_runs, subject_runs)
    result = row(
        SECTION,
        "EventStream + trivial projection (inbox + effect rows)",
        events=events,
        seconds=min(r.seconds for r in subject_runs),
        baseline="raw aiokafka + asyncpg: inbox + effect unnest, 1 tx/batch, commit",
        baseline_events=events,
        baseline_seconds=min(r.seconds for r in raw_runs),
        aim=f">= {AIM_RATIO} of the baseline",
        note=(
            f"best of {ROUNDS} alternating runs each (raw {_runs(raw_runs)} s;"
            f" stream {_runs(subject_runs)} s); CPU of this process per event: raw"
            f" {_cpu_us(raw_runs, events)} us, stream {_cpu_us(subject_runs, events)} us;"
            f" fresh group, earliest, batches <= {BATCH_RECORDS}"
        ),
    )
    result["met"] = (result.get("ratio") or 0.0) >= AIM_RATIO
    result["cpu_us_per_event"] = round(min(r.cpu_seconds for r in subject_runs) / events * 1e6)
    result["baseline_cpu_us_per_event"] = round(min(r.cpu_seconds for r in raw_runs) / events * 1e6)
    return [result]


async def _rounds(
    bootstrap: str,
    topic: str,
    events: int,
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
    raw_runs: list[Timed],
    subject_runs: list[Timed],
) -> None:
    """Baseline and subject alternating, ROUNDS times each, on fresh tables."""
    raw_pool, kit_pool = pools
    for n in range(ROUNDS):
        for pool in pools:
            await _fresh(pool)
        raw_runs.append(await raw_consume_and_write(bootstrap, raw_pool, topic, events))
        await _check(raw_pool, events, "baseline")
        profile = "consumer_stream" if n == 0 else None
        subject_runs.append(await stream_consume(bootstrap, kit_pool, topic, events, profile))
        await _check(kit_pool, events, "EventStream")
        say(
            f"consumer: round {n + 1}: raw {raw_runs[-1].seconds:.2f} s,"
            f" stream {subject_runs[-1].seconds:.2f} s"
        )


def _runs(timed: Sequence[Timed]) -> str:
    return "/".join(f"{t.seconds:.2f}" for t in timed)


def _cpu_us(timed: Sequence[Timed], events: int) -> str:
    return "/".join(f"{t.cpu_seconds / events * 1e6:.0f}" for t in timed)
