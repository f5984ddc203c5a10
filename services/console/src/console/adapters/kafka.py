"""What the console reads from and writes to Kafka: dead letters, replays, consumer lag,
and the events on the topics (a customer's history).

Reading never joins a consumer group: partitions are assigned and read from the earliest
offset up to the end offsets taken at the start, so nothing is committed and the
services' groups are untouched. Replays go out on an idempotent producer (acks=all).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from contracts_schemas.base import Event
from contracts_schemas.cloudevents import InvalidMessage, decode, from_kafka
from contracts_schemas.topics import DEAD_LETTER_PREFIX
from servicekit.kafka import reliable_producer, servers, topic_partitions, topic_reader

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
DLQ_HEADER_PREFIX = "x-dlq-"


class ReplayRefused(Exception):
    """This dead letter cannot be replayed (its body was not kept, or it is gone)."""


@dataclass(frozen=True)
class DeadLetterView:
    topic: str
    partition: int
    offset: int
    key: str
    reason: str
    consumer: str
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    at: str
    body_omitted: str | None
    event_type: str | None
    event_id: str | None
    source: str | None
    event: dict[str, Any] | None
    undecodable: str | None  # why the body is not a readable event, if it is not

    @property
    def ref(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


@dataclass(frozen=True)
class HistoryEntry:
    topic: str
    partition: int
    offset: int
    event_type: str
    event_id: str
    source: str
    occurred_at: str
    event: dict[str, Any] = field(default_factory=dict)


def parse_ref(ref: str) -> tuple[str, int, int]:
    """`topic:partition:offset` (topic names have no colons)."""
    topic, partition, offset = ref.rsplit(":", 2)
    return topic, int(partition), int(offset)


def _header(record: Record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode("utf-8", "replace") if value is not None else ""
    return None


def _int(text: str | None) -> int | None:
    return int(text) if text and text.lstrip("-").isdigit() else None


def dead_letter_view(record: Record) -> DeadLetterView:
    """A dead-letter record with its reason, original position and the decoded event."""
    event: dict[str, Any] | None = None
    undecodable = None
    event_type = event_id = source = None
    omitted = _header(record, "x-dlq-body-omitted")
    try:
        cloud_event = from_kafka(record.headers, record.value)
        event_type, event_id, source = cloud_event.type, cloud_event.id, cloud_event.source
        event = json.loads(cloud_event.data)
        decode(cloud_event)
    except InvalidMessage as invalid:
        undecodable = invalid.reason
    except ValueError:
        undecodable = "the body is not JSON"
    return DeadLetterView(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key.decode("utf-8", "replace") if record.key else "",
        reason=_header(record, "x-dlq-reason") or "",
        consumer=_header(record, "x-dlq-consumer") or "",
        original_topic=_header(record, "x-dlq-original-topic") or "",
        original_partition=_int(_header(record, "x-dlq-original-partition")),
        original_offset=_int(_header(record, "x-dlq-original-offset")),
        at=_header(record, "x-dlq-at") or "",
        body_omitted=omitted,
        event_type=event_type,
        event_id=event_id,
        source=source,
        event=event if isinstance(event, dict) else None,
        undecodable=undecodable,
    )


def replay_headers(record: Record) -> list[tuple[str, bytes]]:
    """The original headers: every `x-dlq-*` header stripped (a replayed record that
    failed again gets fresh ones, never two reasons)."""
    return [
        (k, b"" if v is None else bytes(v))
        for k, v in record.headers or ()
        if not k.startswith(DLQ_HEADER_PREFIX)
    ]


class KafkaOps:
    def __init__(self, bootstrap: str, prefix: str, client_id: str = "console") -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    # ------------------------------------------------------------------ topics

    async def topics(self) -> list[str]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=servers(self._bootstrap), client_id=self._client_id
        )
        await admin.start()
        try:
            names = await admin.list_topics()
        finally:
            await admin.close()
        return sorted(t for t in names if t.startswith(self._prefix) and not t.startswith("__"))

    async def dead_letter_topics(self) -> list[str]:
        start = self._prefix + DEAD_LETTER_PREFIX
        return [t for t in await self.topics() if t.startswith(start)]

    async def event_topics(self) -> list[str]:
        """Topics carrying events: the services' and the upstream systems'."""
        dlq = self._prefix + DEAD_LETTER_PREFIX
        own = (self._prefix + "portal.", self._prefix + "upstream.")
        return [t for t in await self.topics() if t.startswith(own) and not t.startswith(dlq)]

    async def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        consumer = self._consumer()
        await consumer.start()
        try:
            partitions = await _assigned(consumer, self._bootstrap, topics)
            return dict(await consumer.end_offsets(partitions)) if partitions else {}
        finally:
            await consumer.stop()

    async def counts(self, topics: Sequence[str]) -> dict[str, int]:
        """Records per topic that are still there (end minus beginning offsets)."""
        consumer = self._consumer()
        await consumer.start()
        try:
            partitions = await _assigned(consumer, self._bootstrap, topics)
            if not partitions:
                return dict.fromkeys(topics, 0)
            ends = await consumer.end_offsets(partitions)
            begins = await consumer.beginning_offsets(partitions)
        finally:
            await consumer.stop()
        totals = dict.fromkeys(topics, 0)
        for tp in partitions:
            totals[tp.topic] += ends[tp] - begins[tp]
        return totals

    async def read(
        self, topics: Sequence[str], limit_per_partition: int | None = None
    ) -> list[Record]:
        """Every record of `topics` that exists now (the newest `limit_per_partition`)."""
        consumer = self._consumer()
        await consumer.start()
        try:
            partitions = await _assigned(consumer, self._bootstrap, topics)
            if not partitions:
                return []
            ends = await consumer.end_offsets(partitions)
            begins = await consumer.beginning_offsets(partitions)
            wanted = {}
            for tp in partitions:
                first = begins[tp]
                if limit_per_partition is not None:
                    first = max(first, ends[tp] - limit_per_partition)
                if ends[tp] > first:
                    consumer.seek(tp, first)
                    wanted[tp] = ends[tp]
            records: list[Record] = []
            while wanted:
                batch = await consumer.getmany(*wanted, timeout_ms=1000, max_records=2000)
                if not batch:
                    # Transaction markers and compaction leave gaps below the end offset.
                    for tp in list(wanted):
                        if await consumer.position(tp) >= wanted[tp]:
                            del wanted[tp]
                    continue
                for tp, found in batch.items():
                    records += [r for r in found if r.offset < wanted.get(tp, -1)]
                    if found and found[-1].offset + 1 >= wanted.get(tp, 0):
                        wanted.pop(tp, None)
            return records
        finally:
            await consumer.stop()

    async def record(self, topic: str, partition: int, offset: int) -> Record:
        consumer = self._consumer()
        await consumer.start()
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
            found = [r for r in batch.get(tp, []) if r.offset == offset]
            if not found:
                raise ReplayRefused(f"no record at {topic}:{partition}:{offset}")
            return found[0]
        finally:
            await consumer.stop()

    # ------------------------------------------------------------------ dead letters

    async def dead_letters(
        self, topic: str | None = None, limit: int = 200
    ) -> list[DeadLetterView]:
        topics = [topic] if topic else await self.dead_letter_topics()
        records = await self.read(topics, limit_per_partition=limit)
        views = [dead_letter_view(r) for r in records]
        return sorted(views, key=lambda v: (v.at, v.topic, v.partition, v.offset), reverse=True)

    async def dead_letter(self, ref: str) -> DeadLetterView:
        return dead_letter_view(await self.record(*parse_ref(ref)))

    async def replay(self, ref: str) -> DeadLetterView:
        """Publish a dead letter again to its original topic, as it first came (key, body,
        headers without `x-dlq-*`); the consumer's inbox absorbs it if already applied."""
        topic, partition, offset = parse_ref(ref)
        if not topic.startswith(self._prefix + DEAD_LETTER_PREFIX):
            raise ReplayRefused(f"{topic} is not a dead-letter topic")
        record = await self.record(topic, partition, offset)
        view = dead_letter_view(record)
        if view.body_omitted is not None:
            raise ReplayRefused(f"the body was not kept ({view.body_omitted})")
        if not view.original_topic:
            raise ReplayRefused("the dead letter does not name its original topic")
        producer = await self._started_producer()
        await producer.send_and_wait(
            view.original_topic, record.value, key=record.key, headers=replay_headers(record)
        )
        return view

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = reliable_producer(self._bootstrap, f"{self._client_id}-replays")
            await producer.start()
            self._producer = producer
        return self._producer

    # ------------------------------------------------------------------ lag

    async def lag(self) -> list[Lag]:
        """Per consumer group of this prefix and partition: committed offset and end."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=servers(self._bootstrap), client_id=self._client_id
        )
        await admin.start()
        try:
            groups = sorted(
                str(g[0])
                for g in await admin.list_consumer_groups()
                if str(g[0]).startswith(self._prefix)
                and str(g[0])[len(self._prefix) :].split(".")[0] in _SERVICES
            )
            committed = {g: await admin.list_consumer_group_offsets(g) for g in groups}
        finally:
            await admin.close()
        topics = sorted({tp.topic for offsets in committed.values() for tp in offsets})
        ends = await self.end_offsets(topics)
        result = []
        for group, offsets in committed.items():
            for tp, meta in sorted(offsets.items()):
                done = meta.offset if meta.offset >= 0 else None
                result.append(Lag(group, tp.topic, tp.partition, done, ends.get(tp, 0)))
        return result

    # ------------------------------------------------------------------ history

    async def customer_history(self, customer_id: str) -> list[HistoryEntry]:
        """Every event on the event topics that concerns `customer_id` (its
        `customer_ids`), in business time."""
        entries = []
        for record in await self.read(await self.event_topics()):
            try:
                cloud_event = from_kafka(record.headers, record.value)
                message = decode(cloud_event)
            except InvalidMessage:
                continue
            if not isinstance(message, Event) or customer_id not in message.customer_ids:
                continue
            entries.append(
                HistoryEntry(
                    record.topic,
                    record.partition,
                    record.offset,
                    cloud_event.type,
                    cloud_event.id,
                    cloud_event.source,
                    message.occurred_at.isoformat(),
                    message.model_dump(mode="json"),
                )
            )
        return sorted(entries, key=lambda e: (e.occurred_at, e.topic, e.offset))

    def _consumer(self) -> AIOKafkaConsumer:
        return topic_reader(self._bootstrap, self._client_id)


# Consumer groups are named after their service (`loyalty.ledger`, `contracts.identity`).
_SERVICES = frozenset(
    {"contracts", "loyalty", "notifier", "identity", "claims", "documents", "gateway", "console"}
)


async def _assigned(consumer: AIOKafkaConsumer, bootstrap: str, topics: Sequence[str]
                    ) -> list[TopicPartition]:  # fmt: skip
    """Every partition of the topics that exist, assigned to `consumer` (which loads their
    metadata; no group, nothing committed)."""
    partitions = await topic_partitions(bootstrap, topics) if topics else []
    if partitions:
        consumer.assign(partitions)
    return partitions
