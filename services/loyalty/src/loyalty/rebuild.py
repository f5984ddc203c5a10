"""Rebuild the loyalty projections from the event log (OPS-3, LOY-12).

The facts table is emptied and refilled from every input topic, from the first offset up
to the end offsets seen after emptying it; the live consumer carries on from its own
committed offsets, and inserting a fact twice is a no-op, so nothing is missed or doubled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer
from servicekit.consumer import decode_records
from servicekit.kafka import topic_partitions

from loyalty.adapters import fact_store
from loyalty.translation import facts_from


async def rebuild_facts(
    pool: asyncpg.Pool,
    bootstrap: str,
    topics: Sequence[str],
    progress: Callable[[int, int], None] = lambda done, total: None,
    batch: int = 5000,
) -> int:
    """Returns how many events were replayed; `progress(done, total)` after each batch."""
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE facts, statements")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap, topics)
        if not partitions:
            return 0
        consumer.assign(partitions)
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        total = sum(end[tp] - start[tp] for tp in partitions)
        remaining = {tp for tp in partitions if end[tp] > start[tp]}
        await consumer.seek_to_beginning(*partitions)
        done = 0
        progress(0, total)
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=batch)
            records = []
            for tp, partition_records in fetched.items():
                wanted = [r for r in partition_records if r.offset < end[tp]]
                records.extend(wanted)
                if partition_records and partition_records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            deliveries, _ = decode_records(records)
            rows = [row for d in deliveries for row in facts_from(d.message)]
            async with pool.acquire() as conn:
                await fact_store.add_facts(conn, rows)
            done += len(records)
            progress(done, total)
        return done
    finally:
        await consumer.stop()
