"""Rebuild the loyalty projections from the topics (OPS-3, LOY-12).

The facts are emptied and refilled from every input topic, from the first offset up to
the end offsets seen after emptying them; the live consumer carries on from its own
committed offsets, and storing a fact twice is a no-op, so nothing is missed or doubled.
The records are read here (no consumer group); what they mean is `Loyalty.record_facts`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import InvalidMessage, decode, from_kafka
from servicekit.kafka import Record, records_up_to, topic_partitions, topic_reader
from servicekit.unit_of_work import Transactions

from loyalty.handlers import ClearProjections, Loyalty
from loyalty.translation import FOLDED
from loyalty.unit_of_work import LoyaltyUnitOfWork

U = TypeVar("U", bound=LoyaltyUnitOfWork)


async def rebuild_facts(
    transactions: Transactions[U],
    loyalty: Loyalty,
    bootstrap: str,
    topics: Sequence[str],
    progress: Callable[[int, int], None] = lambda done, total: None,
    batch: int = 5000,
    in_flight: int = 2,
) -> int:
    """Returns how many records were replayed; `progress(done, total)` after each batch
    stored. Reading and decoding the next batch overlaps with storing the previous ones
    (up to `in_flight` transactions at once, each one multi-row statement), so the
    replay is bound by the slower of the two, not their sum. Meanwhile the cyclic
    collector runs less often (`_fewer_collections`)."""
    await transactions.execute(loyalty.clear_projections, ClearProjections())
    with _fewer_collections():
        return await _replay(transactions, loyalty, bootstrap, topics, progress, batch, in_flight)


#: The collector's first-generation threshold while replaying (`_fewer_collections`).
REPLAY_GC_THRESHOLD = 500_000


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """A first-generation collection walks every young object still alive, and while
    replaying those are the batches being decoded and stored (~170,000 objects with the
    defaults, ~10 per record): at a service's threshold the collector ran every ~15,000
    records and walked them each time, 8-11 s of a million records' 55-70 s (measured).
    Above what the batches keep alive, reference counting alone frees them, and the
    collector, still on, only runs for garbage in cycles, which a replay hardly makes.
    The thresholds are restored afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(REPLAY_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def _replay(
    transactions: Transactions[U],
    loyalty: Loyalty,
    bootstrap: str,
    topics: Sequence[str],
    progress: Callable[[int, int], None],
    batch: int,
    in_flight: int,
) -> int:
    consumer = topic_reader(bootstrap, "loyalty-rebuild", records_per_fetch=batch)
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap, topics)
        if not partitions:
            return 0
        consumer.assign(partitions)
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        total = sum(end[tp] - start[tp] for tp in partitions)
        await consumer.seek_to_beginning(*partitions)
        progress(0, total)
        writer = _Writer(transactions, loyalty, in_flight, lambda done: progress(done, total))
        try:
            async for records in records_up_to(consumer, end, batch):
                await writer.store(folded_messages(records), len(records))
            return await writer.finish()
        finally:
            writer.cancel()
    finally:
        await consumer.stop()


_FOLDED_TYPES = frozenset(t.encode() for t in FOLDED)


def folded_messages(records: Sequence[Record]) -> list[Contract]:
    """The messages of `records` that may contribute facts, decoded and validated exactly
    as the live consumer decodes them; one it would dead-letter contributes nothing here
    either. Records of the types that contribute nothing are not decoded at all."""
    messages: list[Contract] = []
    for record in records:
        if _cloud_event_type(record) not in _FOLDED_TYPES:
            continue
        try:
            messages.append(decode(from_kafka(record.headers, record.value)))
        except InvalidMessage:
            continue
    return messages


def _cloud_event_type(record: Record) -> bytes | None:
    """The `ce_type` header's value as `from_kafka` reads it (the last one)."""
    found = None
    for name, value in record.headers or ():
        if name == "ce_type":
            found = value
    return found


class _Writer(Generic[U]):
    """Stores batches of messages, each in a transaction of its own, up to `in_flight` at
    once; counts the records of the batches committed."""

    def __init__(
        self,
        transactions: Transactions[U],
        loyalty: Loyalty,
        in_flight: int,
        stored: Callable[[int], None],
    ) -> None:
        self._transactions = transactions
        self._loyalty = loyalty
        self._in_flight = max(1, in_flight)
        self._stored = stored
        self._running: set[asyncio.Task[int]] = set()
        self.done = 0

    async def store(self, messages: list[Contract], records: int) -> None:
        while len(self._running) >= self._in_flight:
            await self._one_finished()
        self._running.add(asyncio.create_task(self._write(messages, records)))

    async def finish(self) -> int:
        while self._running:
            await self._one_finished()
        return self.done

    def cancel(self) -> None:
        for task in self._running:
            task.cancel()

    async def _write(self, messages: list[Contract], records: int) -> int:
        if messages:
            await self._transactions.execute(self._loyalty.record_facts, messages)
        return records

    async def _one_finished(self) -> None:
        finished, self._running = await asyncio.wait(
            self._running, return_when=asyncio.FIRST_COMPLETED
        )
        for task in finished:
            self.done += task.result()  # a failed write ends the rebuild with its error
        self._stored(self.done)
