"""1. Event-store appends (`EventStore.append`, events + outbox rows, in the caller's
transaction) against raw asyncpg INSERTs of the same event rows into an equivalent table
(`CREATE TABLE raw_events (LIKE events INCLUDING ALL)`: same columns, identity, defaults,
unique constraints and indexes). A second baseline writes the same event rows AND the same
outbox rows (an event's lean outbox row: event id, topic, key, source, traceparent) into
twin tables: the ratio against it is what `append`'s own work costs, beyond the rows it
writes. Many streams per transaction go through `append_many`, one statement for all.

Timed stretches of the subject and of its baselines are interleaved in chunks, rotating
who goes first, so a checkpoint or a neighbour's load hits all of them alike. The rows
are built before timing: the subject's time includes what `append` does with its events
(version check, JSON, the CloudEvents envelope, the outbox row), the baselines' only the
database's work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts_schemas import partition_key
from contracts_schemas.contracts import PremiumPaid
from servicekit.eventstore import EventStore

from bench.common import (
    PremiumPaidFactory,
    Row,
    Stopwatch,
    bench_schema,
    count_rows,
    profiled,
    row,
)

SECTION = "1 event store"
AIM = 0.80

RawRow = tuple[UUID, str, int, str, datetime, str]
OutboxRow = tuple[str, UUID, str, str, str, str | None]
RawRows = tuple[RawRow, OutboxRow | None]

_RAW_ONE = """
INSERT INTO raw_events (event_id, stream_id, stream_version, event_type, occurred_at, payload)
VALUES ($1, $2, $3, $4, $5, $6)
"""
_RAW_MANY = """
INSERT INTO raw_events (event_id, stream_id, stream_version, event_type, occurred_at, payload)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::jsonb[])
"""

_RAW_OUTBOX_ONE = """
INSERT INTO raw_outbox (event_id, event_ref, topic, partition_key, source, traceparent)
VALUES ($1, $2, $3, $4, $5, $6)
"""
_RAW_OUTBOX_MANY = """
INSERT INTO raw_outbox (event_id, event_ref, topic, partition_key, source, traceparent)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
"""

Chunk = Callable[[int, int], Awaitable[None]]


def raw_row(event: PremiumPaid) -> RawRow:
    return (
        event.event_id,
        event.aggregate_id,
        event.aggregate_version,
        event.type_name(),
        event.occurred_at,
        event.model_dump_json(),
    )


async def interleaved(works: Sequence[Chunk], total: int, chunks: int, align: int) -> list[float]:
    """Run [start, end) ranges of every work in turns, rotating who goes first; chunk
    bounds are multiples of `align`. Returns each work's summed seconds."""
    watches = [Stopwatch() for _ in works]
    step = -(-total // chunks)
    step = -(-step // align) * align
    for round_, start in enumerate(range(0, total, step)):
        end = min(total, start + step)
        for k in range(len(works)):
            which = (k + round_) % len(works)
            with watches[which].running():
                await works[which](start, end)
    return [watch.seconds for watch in watches]


async def run(dsn: str, topic: str, tx_events: int, batched_events: int, batch: int) -> list[Row]:
    rows: list[Row] = []
    factory = PremiumPaidFactory()
    store = EventStore("/contracts", topic_for=lambda _message: topic)
    async with bench_schema(dsn, "bench_appends", []) as (_schema, pool):
        await pool.execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
        await pool.execute("CREATE TABLE raw_outbox (LIKE outbox INCLUDING ALL)")
        next_id = 0

        def singles(count: int) -> list[PremiumPaid]:
            """One event per stream (a new stream each: expected version 0)."""
            nonlocal next_id
            made = [factory.model(next_id + i, stream=f"s-{next_id + i}") for i in range(count)]
            next_id += count
            return made

        def streams_of(count: int) -> list[PremiumPaid]:
            """Events 1..batch of one stream per batch."""
            nonlocal next_id
            made = [
                factory.model(
                    next_id + i, stream=f"b-{next_id}-{i // batch}", version=i % batch + 1
                )
                for i in range(count)
            ]
            next_id += count
            return made

        def outbox_row(event: PremiumPaid) -> OutboxRow:
            """The lean row `append` queues for an event (no span is active here)."""
            return (str(event.event_id), event.event_id, topic, partition_key(event),
                    store.source, None)  # fmt: skip

        async def one_per_tx(events: Sequence[PremiumPaid], start: int, end: int) -> None:
            for event in events[start:end]:
                async with pool.acquire() as conn, conn.transaction():
                    await store.append(conn, event.aggregate_id, 0, [event])

        async def stream_per_batch(events: Sequence[PremiumPaid], start: int, end: int) -> None:
            for first in range(start, end, batch):
                chunk = events[first : first + batch]
                async with pool.acquire() as conn, conn.transaction():
                    await store.append(conn, chunk[0].aggregate_id, 0, chunk)

        async def streams_per_batch(events: Sequence[PremiumPaid], start: int, end: int) -> None:
            for first in range(start, end, batch):
                appends = [(e.aggregate_id, 0, [e]) for e in events[first : first + batch]]
                async with pool.acquire() as conn, conn.transaction():
                    await store.append_many(conn, appends)

        async def raw_one_per_tx(raws: Sequence[RawRows], start: int, end: int) -> None:
            for event_values, outbox_values in raws[start:end]:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(_RAW_ONE, *event_values)
                    if outbox_values is not None:
                        await conn.execute(_RAW_OUTBOX_ONE, *outbox_values)

        async def raw_multi_row(raws: Sequence[RawRows], start: int, end: int) -> None:
            for first in range(start, end, batch):
                chunk = raws[first : first + batch]
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(_RAW_MANY, *_columns([e for e, _ in chunk]))
                    outbox = [o for _, o in chunk if o is not None]
                    if outbox:
                        await conn.execute(_RAW_OUTBOX_MANY, *_columns(outbox))

        async def measure(
            name: str,
            baseline_name: str,
            subject: Callable[[Sequence[PremiumPaid], int, int], Awaitable[None]],
            baseline: Callable[[Sequence[RawRows], int, int], Awaitable[None]],
            make: Callable[[int], list[PremiumPaid]],
            count: int,
            note: str,
        ) -> list[Row]:
            def raw_rows(with_outbox: bool, count: int) -> list[RawRows]:
                return [(raw_row(e), outbox_row(e) if with_outbox else None) for e in make(count)]

            # Warm-up: the pool's connections, prepared statements, pydantic, all tables.
            warm = 2 * batch
            await subject(make(warm), 0, warm)
            await baseline(raw_rows(False, warm), 0, warm)
            await baseline(raw_rows(True, warm), 0, warm)
            events = make(count)
            raw = raw_rows(False, count)
            raw_outbox = raw_rows(True, count)

            async def subject_chunk(start: int, end: int) -> None:
                await subject(events, start, end)

            async def raw_chunk(start: int, end: int) -> None:
                await baseline(raw, start, end)

            async def raw_outbox_chunk(start: int, end: int) -> None:
                await baseline(raw_outbox, start, end)

            with profiled(_slug(name)):
                subject_s, raw_s, raw_outbox_s = await interleaved(
                    [subject_chunk, raw_chunk, raw_outbox_chunk], count, chunks=6, align=batch
                )
            primary = row(
                SECTION,
                name,
                events=count,
                seconds=subject_s,
                baseline=baseline_name,
                baseline_events=count,
                baseline_seconds=raw_s,
                aim=f"ratio >= {AIM:.2f}",
                note=note,
            )
            primary["met"] = primary["ratio"] >= AIM
            same_rows = row(
                SECTION,
                "  same append, baseline writing the outbox rows too",
                events=count,
                seconds=subject_s,
                baseline=baseline_name.replace("raw", "raw events+outbox", 1),
                baseline_events=count,
                baseline_seconds=raw_outbox_s,
                aim=f"ratio >= {AIM:.2f} (the same rows)",
                note="decomposition: the baseline writes the outbox rows append writes"
                " (pre-encoded), so its ratio is the cost of append's own work"
                if not rows
                else "",
            )
            same_rows["met"] = same_rows["ratio"] >= AIM
            return [primary, same_rows]

        rows += await measure(
            "append, 1 event per transaction",
            "raw INSERT, 1 row per transaction",
            one_per_tx,
            raw_one_per_tx,
            singles,
            tx_events,
            "a new stream per event; append = version check + events + outbox row",
        )
        per_tx = (batched_events // batch) * batch or batch
        rows += await measure(
            f"append, {batch} events per transaction, 1 stream per batch",
            f"raw unnest INSERT, {batch} rows per transaction",
            stream_per_batch,
            raw_multi_row,
            streams_of,
            per_tx,
            f"one append() call of {batch} events (versions 1..{batch}) per transaction",
        )
        rows += await measure(
            f"append, {batch} events per transaction, 1 stream per event",
            f"raw unnest INSERT, {batch} rows per transaction",
            streams_per_batch,
            raw_multi_row,
            singles,
            per_tx,
            f"one append_many() call of {batch} streams (a new one each, expected version 0)",
        )
        stored = await count_rows(pool, "events")
        queued = await count_rows(pool, "outbox")
        if stored != queued:
            raise AssertionError(f"events {stored}, outbox {queued}")
    return rows


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def _slug(name: str) -> str:
    return "appends_" + "".join(c if c.isalnum() else "_" for c in name).strip("_")
