"""A consumer group member's batches, applied in the order fetched, committed, rewound.

FastStream hands a member's handler one fetched batch at a time and fetches the next only
once the handler returned. Decoding a batch is CPU work on the event loop; applying it
mostly waits on PostgreSQL. So a large batch is decoded while the previous one's
transaction runs: the handler decodes in slices (yielding between them, so the previous
batch's statements go out as their replies come in), waits for the previous batch, then
hands its own apply-and-commit to a task and returns, and FastStream fetches the next
batch meanwhile. At most one batch is in flight. A small batch (a steady load's, the
in-memory test broker's) is applied at once, as before: it has little to overlap, and
its latency stays that of one batch.

Offsets. A batch applied at once commits the consumer's position. A batch applied in a
task commits the next offset of each of its own partitions: by then the position already
includes the batch fetched after it.

Failure (the database or the broker away). The failed batch, after a pause, seeks its
partitions back to its first records, so it is read again even if nothing else arrives.
The handler settles the previous batch before it touches any offset: when that batch
failed, the batch in hand was fetched before or after its rewind - it cannot tell which -
so it is dropped and both are rewound to their first records (the minimum per partition:
the order of the two seeks does not matter), and read again. Nothing is ever committed
past a record that was not applied, and no batch is applied before the one fetched
before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from faststream.kafka import KafkaMessage
from faststream.kafka.message import ConsumerProtocol

from servicekit.kafka import Record
from servicekit.logging import get_logger

log = get_logger(__name__)

D = TypeVar("D")

#: Batches of this many records or more are applied in a task (module text).
PIPELINED_FROM = 200
RETRY_PAUSE_SECONDS = (0.5, 1.0, 2.0, 5.0)


class BatchApplier(Protocol[D]):
    """What a member applies its batches with (the inbox consumer)."""

    name: str

    async def decode(self, records: Sequence[Record]) -> D: ...

    async def apply(self, decoded: D) -> None: ...


class BatchLoop(Generic[D]):
    """The handler FastStream calls with each of one member's fetched batches."""

    def __init__(self, applier: BatchApplier[D]) -> None:
        self._applier = applier
        self._in_flight: asyncio.Task[Sequence[Record]] | None = None
        self._failures = 0
        self._closing = False

    async def __call__(self, body: Any) -> None:
        message: KafkaMessage = body  # the decoder hands over the message itself
        try:
            await self._handle(message, message.raw_message)
        finally:
            release_batch(message)

    async def drain(self) -> None:
        """Take no more batches into a task; wait for the one in flight (before the broker
        stops, so it can still commit). A failed one stays for the next handler to see."""
        self._closing = True
        if self._in_flight is not None:
            await asyncio.wait([self._in_flight])

    async def _handle(self, message: KafkaMessage, records: tuple[Record, ...]) -> None:
        kafka = message.consumer
        decoded: D | Exception
        try:
            decoded = await self._applier.decode(records)
        except Exception as exc:
            decoded = exc
        if not await self._previous_applied(kafka, records):
            return
        if isinstance(decoded, Exception):
            await self._failed(kafka, records, decoded)
            return
        if len(records) < PIPELINED_FROM or self._closing:
            await self._apply_and_commit(kafka, records, decoded, message.ack)
            return
        commit = cast(AIOKafkaConsumer, kafka).commit
        offsets = next_offsets(records)
        applying = self._apply_and_commit(kafka, records, decoded, lambda: commit(offsets))
        self._in_flight = asyncio.create_task(applying)

    async def _previous_applied(self, kafka: ConsumerProtocol, records: Sequence[Record]) -> bool:
        task, self._in_flight = self._in_flight, None
        unapplied = await task if task is not None else ()
        if unapplied:
            rewind(kafka, (*unapplied, *records))
            log.info("batch_dropped_after_failed_one", consumer=self._applier.name)
        return not unapplied

    async def _apply_and_commit(
        self,
        kafka: ConsumerProtocol,
        records: Sequence[Record],
        decoded: D,
        commit: Callable[[], Awaitable[None]],
    ) -> Sequence[Record]:
        """Apply, then commit; the records when they were not applied (rewound)."""
        try:
            await self._applier.apply(decoded)
        except Exception as exc:
            await self._failed(kafka, records, exc)
            return records
        self._failures = 0
        try:
            await commit()
        except Exception as exc:
            # A rebalance, an unreachable coordinator, a stopped consumer: whoever reads
            # these partitions next starts from the last commit, and the inbox absorbs what
            # this batch applied. (Nothing may escape: the next batch's handler awaits this.)
            log.warning(
                "offset_commit_failed",
                consumer=self._applier.name,
                error=type(exc).__name__,
                exc_info=exc,
            )
        return ()

    async def _failed(
        self, kafka: ConsumerProtocol, records: Sequence[Record], exc: Exception
    ) -> None:
        """Nothing of the batch was committed: read it again, after a pause."""
        pause = RETRY_PAUSE_SECONDS[min(self._failures, len(RETRY_PAUSE_SECONDS) - 1)]
        self._failures += 1
        log.warning(
            "batch_failed_retrying",
            consumer=self._applier.name,
            error=type(exc).__name__,
            exc_info=exc,
        )
        await asyncio.sleep(pause)
        rewind(kafka, records)


def offset_ranges(records: Sequence[Record]) -> dict[TopicPartition, range]:
    """Each partition of the batch and the offsets from its first record to after its last.
    (Keyed by plain tuples while reading: once per record, a `TopicPartition` costs more.)"""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for record in records:
        position, offset = (record.topic, record.partition), record.offset
        first, after = ranges.get(position, (offset, offset + 1))
        ranges[position] = (min(first, offset), max(after, offset + 1))
    return {TopicPartition(*p): range(first, after) for p, (first, after) in ranges.items()}


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """The offset to commit for each partition of the batch: the one after its last record."""
    return {partition: offsets.stop for partition, offsets in offset_ranges(records).items()}


def rewind(consumer: ConsumerProtocol, records: Sequence[Record]) -> None:
    """Seek every partition of the batch back to its first record, to read it again.

    A partition revoked meanwhile is left alone: its next owner starts from its last
    commit. (FastStream's `nack` stops at the first such partition, and the partitions
    after it would be committed past records that were never applied.)
    """
    for partition, offsets in offset_ranges(records).items():
        try:
            consumer.seek(partition, offsets.start)
        except IllegalStateError:
            log.info("rewind_skipped_revoked", topic=partition.topic, partition=partition.partition)


def release_batch(message: KafkaMessage) -> None:
    """Let go of a handled batch's records. Its message outlives the handling: asyncio
    keeps the context the handling ran in (FastStream's context variables hold the message)
    with every timer scheduled meanwhile, cancelled ones too until they were due (the
    clients' request timeouts, 30 s and more); and FastStream caches the decoded body on
    the message - here the message itself, a cycle only the cyclic collector frees. So
    dozens of batches of records stayed alive, and the collector walked them again and
    again. The first record stays: FastStream reads `raw_message[0]` (its log context)."""
    message.clear_cache()
    message.raw_message = message.raw_message[:1]
