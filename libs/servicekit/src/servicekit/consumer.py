"""At-least-once consumers with idempotent effects.

For every fetched batch: undecodable messages go to the consumer's dead-letter topic
with the reason; the rest are deduplicated against the inbox and handed to the handler,
inbox rows and effects in ONE database transaction; only after it committed are the
Kafka offsets committed. A crash anywhere re-delivers, and the inbox absorbs what was
already done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import CloudEvent, InvalidMessage, decode, from_kafka
from contracts_schemas.topics import dead_letter_topic

from servicekit.db import Connection
from servicekit.eventstore import transaction_retrying_conflicts
from servicekit.kafka import OutgoingRecord, publish_all
from servicekit.logging import get_logger
from servicekit.metrics import BATCH_SECONDS, CONSUMED
from servicekit.tracing import context_from_headers, tracer

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One decoded message, with where it came from."""

    message: Contract
    cloud_event: CloudEvent
    record: ConsumerRecord[bytes, bytes]

    @property
    def event_id(self) -> str:
        return self.cloud_event.id


Handler = Callable[[Connection, Sequence[Delivery]], Awaitable[None]]


class Rejected(Exception):
    """Raised by a handler for an event that can never be processed (goes to dead letters)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: ConsumerRecord[bytes, bytes]
    reason: str


class InboxConsumer:
    def __init__(
        self,
        *,
        name: str,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        pool: asyncpg.Pool,
        handler: Handler,
        batch_max: int = 1000,
        poll_timeout_ms: int = 200,
    ) -> None:
        self.name = name
        self._consumer = consumer
        self._producer = producer
        self._pool = pool
        self._handler = handler
        self._batch_max = batch_max
        self._poll_timeout_ms = poll_timeout_ms
        self.processed = 0
        self.duplicates = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._consumer.getmany(
                timeout_ms=self._poll_timeout_ms, max_records=self._batch_max
            )
            if batch:
                await self.process(batch)

    async def process(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        records = [r for partition_records in batch.values() for r in partition_records]
        deliveries, dead = decode_records(records)
        span = tracer(__name__).start_as_current_span(
            f"consume {self.name}", context=context_from_headers(records[0].headers)
        )
        with span, BATCH_SECONDS.labels(self.name).time():
            dead += await self._apply(deliveries)
            await self._dead_letter(dead)
        await self._commit(batch)

    async def _apply(self, deliveries: list[Delivery]) -> list[DeadLetter]:
        """Apply the batch in one transaction; on a Rejected event, fall back to one by one."""
        if not deliveries:
            return []
        try:
            await self._in_transaction(deliveries)
            return []
        except Rejected:
            log.warning("batch_rejected_retrying_one_by_one", consumer=self.name)
        dead: list[DeadLetter] = []
        for delivery in deliveries:
            try:
                await self._in_transaction([delivery])
            except Rejected as rejection:
                async with self._pool.acquire() as conn:
                    await _remember(conn, self.name, [delivery.event_id])
                dead.append(DeadLetter(delivery.record, rejection.reason))
        return dead

    async def _in_transaction(self, deliveries: list[Delivery]) -> None:
        await transaction_retrying_conflicts(
            self._pool, lambda conn: self._apply_fresh(conn, deliveries)
        )

    async def _apply_fresh(self, conn: Connection, deliveries: list[Delivery]) -> None:
        fresh_ids = await _remember(conn, self.name, [d.event_id for d in deliveries])
        fresh = _first_of_each(d for d in deliveries if d.event_id in fresh_ids)
        self.duplicates += len(deliveries) - len(fresh)
        CONSUMED.labels(self.name, "duplicate").inc(len(deliveries) - len(fresh))
        if fresh:
            await self._handler(conn, fresh)
        self.processed += len(fresh)
        CONSUMED.labels(self.name, "applied").inc(len(fresh))

    async def _dead_letter(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        topic = dead_letter_topic(self.name)
        await publish_all(self._producer, [_dead_letter_record(topic, self.name, d) for d in dead])
        self.dead_lettered += len(dead)
        CONSUMED.labels(self.name, "dead_lettered").inc(len(dead))
        for letter in dead:
            log.warning(
                "dead_lettered",
                consumer=self.name,
                topic=letter.record.topic,
                partition=letter.record.partition,
                offset=letter.record.offset,
                reason=letter.reason,
            )

    async def _commit(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance or an unreachable coordinator: whoever reads these partitions next
            # starts from the last commit, and the inbox absorbs what this batch applied.
            log.warning("offset_commit_failed", consumer=self.name, error=repr(exc))


def decode_records(
    records: Sequence[ConsumerRecord[bytes, bytes]],
) -> tuple[list[Delivery], list[DeadLetter]]:
    deliveries: list[Delivery] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            cloud_event = from_kafka(record.headers, record.value)
            message = decode(cloud_event)
        except InvalidMessage as invalid:
            dead.append(DeadLetter(record, invalid.reason))
            continue
        deliveries.append(Delivery(message, cloud_event, record))
    return deliveries, dead


def _first_of_each(deliveries: Iterable[Delivery]) -> list[Delivery]:
    seen: dict[str, Delivery] = {}
    for delivery in deliveries:
        seen.setdefault(delivery.event_id, delivery)
    return list(seen.values())


async def _remember(conn: Connection, consumer: str, event_ids: list[str]) -> set[str]:
    """Insert inbox rows; returns the ids that were not there before."""
    rows = await conn.fetch(
        "INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::text[])"
        " ON CONFLICT DO NOTHING RETURNING event_id",
        consumer,
        list(dict.fromkeys(event_ids)),
    )
    return {row["event_id"] for row in rows}


def _dead_letter_record(topic: str, consumer: str, letter: DeadLetter) -> OutgoingRecord:
    record = letter.record
    headers = [(k, v) for k, v in record.headers or () if not k.startswith("x-dlq-")]
    headers += [
        ("x-dlq-reason", letter.reason.encode()),
        ("x-dlq-consumer", consumer.encode()),
        ("x-dlq-original-topic", record.topic.encode()),
        ("x-dlq-original-partition", str(record.partition).encode()),
        ("x-dlq-original-offset", str(record.offset).encode()),
        ("x-dlq-at", datetime.now(UTC).isoformat().encode()),
    ]
    key = record.key.decode("utf-8", "replace") if record.key else ""
    return OutgoingRecord(topic, key, record.value or b"", headers)
