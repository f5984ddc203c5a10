"""2. Outbox relay: `OutboxRelay.drain` publishing N stored events (lean outbox rows, the
body and envelope read from `events`) in pipelined rounds on the producer of the service's
FastStream broker (`EventStream.producer()`, enqueued by `servicekit.kafka.send_all`),
against raw aiokafka sends of the same records (same keys, values and headers, to a twin
topic) on a producer of the same settings (`reliable_producer`: acks=all, idempotent,
linger 5 ms, 256 KiB batches), all sent and then awaited together. Both are timed on a
frozen heap (`gc.freeze()` after the warm-up), as in a service process; they alternate
(baseline, relay, three times, fresh rows each time) and the fastest run of each is kept.
"""

from __future__ import annotations

import asyncio
import functools
import time

from aiokafka import AIOKafkaProducer
from servicekit.eventstore import EventStore
from servicekit.kafka import OutgoingRecord, ensure_topics, reliable_producer, send_all
from servicekit.memory import InMemoryUnitOfWork, memory_transactions
from servicekit.outbox import OutboxRelay, read_pending, relay_lock_key
from servicekit.settings import ServiceSettings
from servicekit.stream import EventStream
from servicekit.testing import unique

from bench.common import (
    BenchFailure,
    PremiumPaidFactory,
    Row,
    bench_schema,
    count_rows,
    deadline_for,
    frozen_heap,
    profiled,
    row,
    say,
)

SECTION = "2 outbox relay"
WARM = 2_000
ROUNDS = 3


async def run(dsn: str, bootstrap: str, events: int, batch_size: int = 1000) -> list[Row]:
    topic, raw_topic = unique("bench_relay"), unique("bench_relay_raw")
    await ensure_topics(bootstrap, [topic, raw_topic])
    factory = PremiumPaidFactory()
    store = EventStore("/contracts", topic_for=lambda _message: topic)
    async with bench_schema(dsn, "bench_relay", []) as (schema, pool):

        async def prefill(first: int, count: int) -> list[OutgoingRecord]:
            """Store events through `EventStore.append_many` (1000 new streams per
            transaction); returns the records the relay will send for them."""
            mark = int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))
            for start in range(first, first + count, 1000):
                chunk = [factory.model(i, stream=f"s-{i}")
                         for i in range(start, min(first + count, start + 1000))]  # fmt: skip
                async with pool.acquire() as conn, conn.transaction():
                    await store.append_many(conn, [(e.aggregate_id, 0, [e]) for e in chunk])
            async with pool.acquire() as conn:
                _ids, records = await read_pending(conn, count, mark)
            return records

        # Publishing only: no subscriber, so no transaction is ever opened through it.
        settings = ServiceSettings(
            service_name="bench-relay", kafka_bootstrap=bootstrap, instance_id="bench"
        )
        stream = EventStream(settings, memory_transactions(InMemoryUnitOfWork()))
        raw_producer = reliable_producer(bootstrap, "bench-relay-raw")
        await stream.start()
        await raw_producer.start()
        try:
            relay = OutboxRelay(
                pool,
                stream.publish,
                send=functools.partial(send_all, stream.producer()),
                lock_key=relay_lock_key(schema),
                batch_size=batch_size,
            )

            async def drain(count: int) -> None:
                target = relay.published + count
                await asyncio.wait_for(relay.drain(), deadline_for(count) - time.perf_counter())
                if relay.published != target:
                    raise BenchFailure(f"relay published {relay.published}, not {target}")

            # Warm-up of both paths (connections, metadata, producer ids, statements).
            warm_records = await prefill(0, WARM)
            await drain(WARM)
            await _raw_send(raw_producer, raw_topic, warm_records)

            raw_runs: list[float] = []
            relay_runs: list[float] = []
            raw_cpu: list[float] = []
            relay_cpu: list[float] = []
            for n in range(ROUNDS):
                say(f"relay: round {n + 1}: queueing {events} outbox rows")
                records = await prefill(WARM + n * events, events)
                with frozen_heap():
                    started, cpu = time.perf_counter(), time.process_time()
                    await _raw_send(raw_producer, raw_topic, records)
                    raw_runs.append(time.perf_counter() - started)
                    raw_cpu.append(time.process_time() - cpu)

                    with profiled("relay_drain" if n == 0 else None):
                        started, cpu = time.perf_counter(), time.process_time()
                        await drain(events)
                        relay_runs.append(time.perf_counter() - started)
                        relay_cpu.append(time.process_time() - cpu)
            left = await count_rows(pool, "outbox WHERE published_at IS NULL")
            if left:
                raise BenchFailure(f"{left} outbox rows left unpublished")
        finally:
            await stream.close()
            await raw_producer.stop()
    return [
        row(
            SECTION,
            f"relay publish_pending, {batch_size} rows per round",
            events=events,
            seconds=min(relay_runs),
            baseline="raw aiokafka send, all then await",
            baseline_events=events,
            baseline_seconds=min(raw_runs),
            note=f"best of {ROUNDS} alternating runs each (raw {_runs(raw_runs)} s; relay"
            f" {_runs(relay_runs)} s); CPU of this process per event: raw"
            f" {_us(raw_cpu, events)} us, relay {_us(relay_cpu, events)} us; same records;"
            " the stream's producer has"
            " reliable_producer's settings; rounds pipelined (up to 4 in flight), each deleted"
            " once acknowledged",
        )
    ]


async def _raw_send(producer: AIOKafkaProducer, topic: str, records: list[OutgoingRecord]) -> None:
    deliveries = [
        await producer.send(topic, r.value, key=r.key.encode(), headers=r.headers) for r in records
    ]
    await asyncio.gather(*deliveries)


def _runs(seconds: list[float]) -> str:
    return "/".join(f"{s:.2f}" for s in seconds)


def _us(seconds: list[float], events: int) -> str:
    return "/".join(f"{s / events * 1e6:.0f}" for s in seconds)
