"""What every benchmark shares: result rows, timing, profiling, schemas, and PremiumPaid
events, as models or as pre-encoded Kafka records, produced fast."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from contracts_schemas.cloudevents import decode, encode, from_kafka
from contracts_schemas.common import ProductLine
from contracts_schemas.contracts import PremiumPaid
from servicekit.db import create_pool, drop_schema, migrate
from servicekit.kafka import Headers
from servicekit.runtime import SERVICE_GC_THRESHOLD
from servicekit.testing import unique

Row = dict[str, Any]
"""One line of the result table (and of the JSON file): see `row`."""

PARTITIONS = 3
"""Partitions of every benchmark topic (what `ensure_topics` gives the services)."""

SOURCE = "/contracts"


class BenchFailure(RuntimeError):
    """A benchmark did not reach its count within its deadline, or counted wrongly."""


# ---------------------------------------------------------------------------------------
# Result rows
# ---------------------------------------------------------------------------------------


def row(
    section: str,
    name: str,
    *,
    events: int,
    seconds: float,
    baseline: str | None = None,
    baseline_events: int | None = None,
    baseline_seconds: float | None = None,
    aim: str | None = None,
    met: bool | None = None,
    note: str = "",
) -> Row:
    """A measured figure, with its baseline when it has one.

    Keys: section, name, events, seconds, events_per_s, and when there is a baseline:
    baseline, baseline_events, baseline_seconds, baseline_events_per_s, ratio
    (events_per_s / baseline_events_per_s); aim (text) and met (bool) when there is an
    aim; note.
    """
    rate = events / seconds if seconds > 0 else float("nan")
    result: Row = {
        "section": section,
        "name": name,
        "events": events,
        "seconds": round(seconds, 4),
        "events_per_s": round(rate, 1),
    }
    if baseline is not None and baseline_events is not None and baseline_seconds is not None:
        base_rate = baseline_events / baseline_seconds if baseline_seconds > 0 else float("nan")
        result |= {
            "baseline": baseline,
            "baseline_events": baseline_events,
            "baseline_seconds": round(baseline_seconds, 4),
            "baseline_events_per_s": round(base_rate, 1),
            "ratio": round(rate / base_rate, 3) if base_rate else None,
        }
    if aim is not None:
        result["aim"] = aim
        result["met"] = met
    if note:
        result["note"] = note
    return result


def say(message: str) -> None:
    """Progress on stderr, so stdout carries the facts and the table only."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Timing and profiling
# ---------------------------------------------------------------------------------------


@dataclass
class Stopwatch:
    """Accumulates the time of several timed stretches (chunks interleaved with others)."""

    seconds: float = 0.0
    _started: float = field(default=0.0, repr=False)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started


_profile_dir: Path | None = None


def enable_profiling(folder: Path) -> None:
    global _profile_dir
    folder.mkdir(parents=True, exist_ok=True)
    _profile_dir = folder


def profiling() -> bool:
    return _profile_dir is not None


@contextlib.contextmanager
def profiled(name: str | None) -> Iterator[None]:
    """With `--profile DIR`, run the block under cProfile (the event loop and every
    callback run in this thread, so the profile covers the whole pipeline of Python work)
    and write DIR/name.prof plus DIR/name.txt, the top functions by own and total time.
    A `name` of None never profiles (warm-ups)."""
    if _profile_dir is None or name is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(_profile_dir / f"{name}.prof")
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(35)
        stats.sort_stats("cumulative").print_stats(45)
        (_profile_dir / f"{name}.txt").write_text(text.getvalue())
        say(f"profile of {name}: {_profile_dir / name}.txt")


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """What a service process does after start-up (`servicekit.runtime.serve_service`):
    `gc.freeze()`, so no full collection walks the start-up heap again, and the collector's
    higher first-generation threshold. For the timed part of a section, subject and
    baseline alike, after the warm-up; undone after it, so the sections after it run as
    before."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(SERVICE_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def until(
    condition: Callable[[], bool], deadline: float, what: str, every: float = 0.002
) -> None:
    """Wait (polling `every` seconds) until `condition()`; BenchFailure past `deadline`
    (perf_counter)."""
    while not condition():
        if time.perf_counter() > deadline:
            raise BenchFailure(f"timed out waiting for {what}")
        await asyncio.sleep(every)


def deadline_for(events: int, floor_rate: float = 500.0, minimum: float = 60.0) -> float:
    """A generous bound for a loop over `events`: it stops by itself even when stuck."""
    return time.perf_counter() + max(minimum, events / floor_rate)


# ---------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_schema(
    dsn: str, prefix: str, migrations: Sequence[tuple[str, str]], pool_size: int = 10
) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A uniquely named, migrated schema with a pool on it; dropped afterwards."""
    schema = unique(prefix)
    try:
        await migrate(dsn, schema, migrations)
        pool = await create_pool(dsn, schema, max_size=pool_size)
        try:
            yield schema, pool
        finally:
            await pool.close()
    finally:
        await drop_schema(dsn, schema)


async def count_rows(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 (our names)


# ---------------------------------------------------------------------------------------
# PremiumPaid events
# ---------------------------------------------------------------------------------------

_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_MARK_ID = uuid.UUID("0badc0de-0000-4000-8000-00000000beef")
_MARK_TIME = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
_MARKS = {
    str(_MARK_ID): "{event_id}",
    "AGGREGATEMARK": "{policy}",
    "PAYMENTMARK": "{payment}",
    "CUSTOMERMARK": "{customer}",
    "987654321": "{amount}",
}


class PremiumPaidFactory:
    """PremiumPaid events with varying ids: as pydantic models (for the event store) or
    as pre-encoded CloudEvents records (for topics), both exactly what the platform's own
    `encode` produces. `salt` keeps the ids of one run apart from every other run's."""

    def __init__(self, customers: int = 50_000, policies: int = 100_000) -> None:
        self.salt = secrets.token_hex(4)
        self.customers = customers
        self.policies = policies
        self._times = [_EPOCH + timedelta(minutes=m) for m in range(1440)]
        self._body_times = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in self._times]
        self._header_times = [t.isoformat().encode() for t in self._times]
        self._template = self._body_template()
        self._type = PremiumPaid.type_name().encode()
        self._check()

    def event_id(self, i: int) -> str:
        return f"{self.salt}-0000-4000-8000-{i:012x}"

    def model(self, i: int, *, stream: str | None = None, version: int = 1) -> PremiumPaid:
        policy = f"policy-{self.salt}-{i % self.policies}"
        customer = f"cust-{self.salt}-{i % self.customers}"
        return PremiumPaid(
            event_id=uuid.UUID(self.event_id(i)),
            aggregate_id=stream or policy,
            aggregate_version=version,
            occurred_at=self._times[i % len(self._times)],
            customer_ids=(customer,),
            policy_id=policy,
            payment_id=f"pay-{self.salt}-{i}",
            product_line=ProductLine.MOTOR,
            point_relevant=True,
            amount_cents=1000 + i % 50_000,
            policyholder_ids=(customer,),
        )

    def record(self, i: int) -> tuple[bytes, bytes, Headers]:
        """(key, value, headers) of event `i`, as the contracts service would publish it."""
        policy = f"policy-{self.salt}-{i % self.policies}"
        event_id = self.event_id(i)
        minute = i % len(self._times)
        value = self._template.format(
            event_id=event_id,
            policy=policy,
            payment=f"pay-{self.salt}-{i}",
            customer=f"cust-{self.salt}-{i % self.customers}",
            amount=1000 + i % 50_000,
            time=self._body_times[minute],
        ).encode()
        headers: Headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", event_id.encode()),
            ("ce_type", self._type),
            ("ce_source", SOURCE.encode()),
            ("content-type", b"application/json"),
            ("ce_time", self._header_times[minute]),
            ("ce_subject", policy.encode()),
        ]
        return policy.encode(), value, headers

    def partition(self, i: int) -> int:
        """Keeps each policy on one partition, as keyed publishing does."""
        return (i % self.policies) % PARTITIONS

    @staticmethod
    def _body_template() -> str:
        marked = PremiumPaid(
            event_id=_MARK_ID,
            aggregate_id="AGGREGATEMARK",
            aggregate_version=1,
            occurred_at=_MARK_TIME,
            customer_ids=("CUSTOMERMARK",),
            policy_id="AGGREGATEMARK",
            payment_id="PAYMENTMARK",
            product_line=ProductLine.MOTOR,
            point_relevant=True,
            amount_cents=987654321,
            policyholder_ids=("CUSTOMERMARK",),
        ).model_dump_json()
        template = marked.replace("{", "{{").replace("}", "}}")
        for mark, slot in _MARKS.items():
            template = template.replace(mark, slot)
        return template.replace(_MARK_TIME.strftime("%Y-%m-%dT%H:%M:%SZ"), "{time}")

    def _check(self) -> None:
        """The pre-encoded records are byte for byte what `encode` makes of the model."""
        for i in (0, 1, 77_777, 1_234_567):
            key, value, headers = self.record(i)
            model = self.model(i)
            expected = encode(model, SOURCE)
            assert value == expected.data, (value, expected.data)
            assert headers == expected.headers(), (headers, expected.headers())
            assert key == model.policy_id.encode()
            assert decode(from_kafka(headers, value)) == model


# ---------------------------------------------------------------------------------------
# Kafka helpers
# ---------------------------------------------------------------------------------------


async def fill_topic(
    bootstrap: str,
    topic: str,
    factory: PremiumPaidFactory,
    count: int,
    first: int = 0,
) -> float:
    """Produce events first..first+count-1 to `topic` as fast as the client allows
    (records appended straight into per-partition batches); returns the seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="bench-fill",
        acks=1,
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=2 * 1024 * 1024,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        batches = [producer.create_batch() for _ in range(PARTITIONS)]
        pending: list[asyncio.Future[Any]] = []
        for i in range(first, first + count):
            key, value, headers = factory.record(i)
            p = factory.partition(i)
            if batches[p].append(key=key, value=value, timestamp=None, headers=headers) is None:
                pending.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
                appended = batches[p].append(key=key, value=value, timestamp=None, headers=headers)
                assert appended is not None, "one record larger than a batch"
        for p, batch in enumerate(batches):
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def wait_assigned(consumer: AIOKafkaConsumer, deadline: float) -> None:
    """Until the group gave this (only) member its partitions: joining is not timed."""
    await until(lambda: len(consumer.assignment()) > 0, deadline, "the group assignment")


async def timed(work: Awaitable[Any]) -> float:
    started = time.perf_counter()
    await work
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------
# Comparing two runs
# ---------------------------------------------------------------------------------------


def compare(old_rows: Sequence[Row], new_rows: Sequence[Row]) -> list[str]:
    """Lines of a table: every figure with a ratio in either run (matched by section, name
    and which of that name it is), its old and new ratio and the change; figures of one
    run only say so."""
    old, new = _keyed(old_rows), _keyed(new_rows)
    keys = list(new) + [k for k in old if k not in new]
    table = [["section", "figure", "old ratio", "new ratio", "change"]]
    for key in keys:
        before, after = old.get(key, {}).get("ratio"), new.get(key, {}).get("ratio")
        if before is None and after is None:
            continue
        if before is None or after is None:
            change = "new figure" if before is None else "gone"
        else:
            change = (
                f"{after - before:+.3f} ({(after / before - 1) * 100:+.0f}%)" if before else "-"
            )
        table.append([str(key[0]), str(key[1]).rstrip(),
                      "-" if before is None else f"{before:.3f}",
                      "-" if after is None else f"{after:.3f}", change])  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = []
    for n, line in enumerate(table):
        cells = [
            c.rjust(w) if 2 <= i <= 3 else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append(" | ".join(cells).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return lines


def _keyed(rows: Sequence[Row]) -> dict[tuple[Any, Any, int], Row]:
    keyed: dict[tuple[Any, Any, int], Row] = {}
    for r in rows:
        n = 0
        while (r.get("section"), r.get("name"), n) in keyed:
            n += 1
        keyed[(r.get("section"), r.get("name"), n)] = r
    return keyed
