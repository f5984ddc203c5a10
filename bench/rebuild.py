"""5. Rebuilding the loyalty projections (`loyalty.entrypoints.rebuild.rebuild_facts`)
from a topic of N PremiumPaid CloudEvents, against a raw read of the same topic to its
end offsets with the same consumer settings (assigned partitions, no group, batches of 5000).

Both timings include starting their consumer, as an operator's rebuild does. The topic
is produced beforehand with a raw producer (pre-encoded records, varying ids); that time
is reported as a figure of its own.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition
from loyalty.bootstrap import MIGRATIONS
from loyalty.bootstrap import unit_of_work as loyalty_unit_of_work
from loyalty.domain.config import LoyaltyConfig
from loyalty.entrypoints.rebuild import rebuild_facts
from loyalty.handlers import Loyalty
from servicekit.clock import SystemClock
from servicekit.db import migrations_in
from servicekit.eventstore import EventStore
from servicekit.kafka import ensure_topics, topic_reader
from servicekit.postgres import postgres_transactions
from servicekit.testing import unique

from bench.common import (
    PARTITIONS,
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
)

SECTION = "5 loyalty rebuild"
AIM_SECONDS = 40.0
AIM_EVENTS = 1_000_000
WARM = 5_000


async def raw_read(bootstrap: str, topic: str, batch: int = 5000) -> tuple[float, float, int]:
    """Seconds and this process's CPU seconds to read every record of `topic` up to its
    end offsets, and how many."""
    started, cpu = time.perf_counter(), time.process_time()
    consumer = topic_reader(bootstrap, "bench-raw-read", records_per_fetch=batch)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if end[tp] > 0}
        seen = 0
        deadline = deadline_for(sum(end.values()), floor_rate=2000)
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=batch)
            for tp, records in fetched.items():
                seen += sum(1 for r in records if r.offset < end[tp])
                if records and records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            if time.perf_counter() > deadline:
                raise BenchFailure(f"raw read saw {seen} records")
        return time.perf_counter() - started, time.process_time() - cpu, seen
    finally:
        await consumer.stop()


async def run(dsn: str, bootstrap: str, events: int) -> list[Row]:
    topic, warm_topic = unique("bench_rebuild"), unique("bench_rebuild_warm")
    await ensure_topics(bootstrap, [topic, warm_topic])
    factory = PremiumPaidFactory(customers=max(1000, events // 20))
    await fill_topic(bootstrap, warm_topic, factory, WARM)
    say(f"rebuild: producing {events:,} PremiumPaid events")
    produced = await fill_topic(bootstrap, topic, factory, events, first=WARM)
    say(f"rebuild: produced in {produced:.1f} s")
    rows = [
        row(
            SECTION,
            f"produce {events:,} PremiumPaid for the rebuild",
            events=events,
            seconds=produced,
            note="raw producer: pre-encoded CloudEvents, acks=1, 512 KiB batches built"
            " directly (send_batch), 3 partitions; encoding included",
        )
    ]
    async with bench_schema(dsn, "bench_rebuild", migrations_in(MIGRATIONS)) as (_, pool):
        store = EventStore("/loyalty")
        transactions = postgres_transactions(pool, lambda c: loyalty_unit_of_work(c, store))
        loyalty = Loyalty(LoyaltyConfig(), SystemClock())
        warmed = await rebuild_facts(transactions, loyalty, bootstrap, [warm_topic])
        if warmed != WARM:
            raise BenchFailure(f"warm-up rebuild replayed {warmed}, expected {WARM}")
        raw_seconds, raw_cpu, seen = await raw_read(bootstrap, topic)
        if seen != events:
            raise BenchFailure(f"raw read saw {seen}, expected {events}")
        say("rebuild: replaying")
        with profiled("rebuild_facts"):
            started, cpu = time.perf_counter(), time.process_time()
            done = await asyncio.wait_for(
                rebuild_facts(transactions, loyalty, bootstrap, [topic]),
                timeout=max(600.0, events / 500),
            )
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        stored = await count_rows(pool, "facts")
        if done != events or stored != events:
            raise BenchFailure(f"rebuild replayed {done} and stored {stored}, expected {events}")
    projected = seconds * AIM_EVENTS / events
    cpu_us, raw_cpu_us = cpu / events * 1e6, raw_cpu / events * 1e6
    note = (
        f"CPU of this process per event: {cpu_us:.0f} us, raw {raw_cpu_us:.0f} us;"
        " TRUNCATE + consumer start included; 1 fact per event"
    )
    if events != AIM_EVENTS:
        note += f"; projected linearly to {AIM_EVENTS:,} events: {projected:.1f} s"
    result = row(
        SECTION,
        f"rebuild_facts over {events:,} events",
        events=events,
        seconds=seconds,
        baseline="raw read to end offsets (same consumer settings)",
        baseline_events=events,
        baseline_seconds=raw_seconds,
        aim=f"< {AIM_SECONDS:.0f} s for {AIM_EVENTS:,} events",
        note=note,
    )
    result["met"] = projected < AIM_SECONDS
    result["cpu_us_per_event"] = round(cpu_us)
    result["baseline_cpu_us_per_event"] = round(raw_cpu_us)
    rows.append(result)
    return rows
