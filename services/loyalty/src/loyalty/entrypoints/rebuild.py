"""Rebuild the loyalty projections from the topics (OPS-3, LOY-12).

The facts are emptied and refilled from every input topic, from the first offset up to
the end offsets seen after emptying them; the live consumer carries on from its own
committed offsets, and storing a fact twice is a no-op, so nothing is missed or doubled.
The records are read here (no consumer group); what they mean is `Loyalty.record_facts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from servicekit.kafka import topic_partitions
from servicekit.stream import Record, decode_records
from servicekit.unit_of_work import Transactions

from loyalty.handlers import ClearProjections, Loyalty
from loyalty.unit_of_work import LoyaltyUnitOfWork

U = TypeVar("U", bound=LoyaltyUnitOfWork)


async def rebuild_facts(
    transactions: Transactions[U],
    loyalty: Loyalty,
    bootstrap: str,
    topics: Sequence[str],
    progress: Callable[[int, int], None] = lambda done, total: None,
    batch: int = 5000,
) -> int:
    """Returns how many records were replayed; `progress(done, total)` after each batch."""
    await transactions.execute(loyalty.clear_projections, ClearProjections())
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
            records: list[Record] = []
            for tp, partition_records in fetched.items():
                records.extend(r for r in partition_records if r.offset < end[tp])
                if partition_records and partition_records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            deliveries, _ = decode_records(records)
            await transactions.execute(loyalty.record_facts, [d.message for d in deliveries])
            done += len(records)
            progress(done, total)
        return done
    finally:
        await consumer.stop()
