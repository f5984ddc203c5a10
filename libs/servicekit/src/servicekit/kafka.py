"""Kafka clients with the settings this platform relies on.

The defaults of the client libraries are not ours: the producer here is idempotent with
acks=all, and topics are created with the platform's partition count and the cluster's
default replication factor - or, where the topics belong to an operator (production:
Strimzi's KafkaTopic resources), only checked (`PORTAL_KAFKA_CREATE_TOPICS=false`). Live
consumers are FastStream subscribers (`servicekit.stream`), which set earliest +
commit-after-effect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

Headers = list[tuple[str, bytes]]
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


class OutgoingRecord(NamedTuple):
    """A record to send (a tuple: the relay makes one per published event)."""

    topic: str
    key: str
    value: bytes
    headers: Headers


def servers(bootstrap: str) -> list[str]:
    """`PORTAL_KAFKA_BOOTSTRAP` lists every node of a cluster, comma-separated; aiokafka
    takes a str as ONE address (it would resolve "h:1,h:2,h" as a host name), so every
    client gets the list."""
    return [server.strip() for server in bootstrap.split(",") if server.strip()]


def reliable_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=servers(bootstrap),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
        retry_backoff_ms=200,
    )


def topic_reader(
    bootstrap: str, client_id: str | None = None, *, records_per_fetch: int = 500
) -> AIOKafkaConsumer:
    """A consumer without a group, for reading whole topics (rebuilds, operator views,
    lag, tests): nothing is committed, so reading changes nothing for the services. The
    caller assigns the partitions; fetches are large, since these reads go to the end."""
    return AIOKafkaConsumer(
        bootstrap_servers=servers(bootstrap),
        client_id=client_id or "portal-topic-reader",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=records_per_fetch,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )


async def records_up_to(
    consumer: AIOKafkaConsumer, end: dict[TopicPartition, int], max_records: int | None = None
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """The records of `end`'s partitions (assigned, at their start position) below its
    offsets, fetch by fetch: what a whole-topic read (a rebuild, a test) goes through."""
    remaining = {tp for tp, offset in end.items() if offset > await consumer.position(tp)}
    while remaining:
        fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=max_records)
        records: list[ConsumerRecord[bytes, bytes]] = []
        for tp, partition_records in fetched.items():
            records.extend(r for r in partition_records if r.offset < end[tp])
            if partition_records and partition_records[-1].offset + 1 >= end[tp]:
                remaining.discard(tp)
        if records:
            yield records


def at_least_once_consumer(
    bootstrap: str, group_id: str, topics: Sequence[str], client_id: str | None = None
) -> AIOKafkaConsumer:
    """A plain aiokafka consumer with the stream's fetch settings and manual commits: the
    raw baseline of the benchmarks (services consume through `servicekit.stream`)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=servers(bootstrap),
        group_id=group_id,
        client_id=client_id or group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=1000,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        session_timeout_ms=30_000,
        heartbeat_interval_ms=3_000,
        retry_backoff_ms=200,
    )


async def send_all(
    producer: AIOKafkaProducer, records: Sequence[OutgoingRecord]
) -> asyncio.Future[list[object]]:
    """Enqueue records in order; the result completes when the broker acknowledged every
    one of them (the outbox relay's `Send`, to pipeline its rounds).

    The records go out as whole batches (`create_batch`/`send_batch`), one per partition
    (more where one is full), each record on the partition `send` would choose for its key
    (Kafka's default partitioner): a batch costs one future and one enqueue instead of one
    per record, about half of the producer's CPU per record (bench section 2). A partition's
    batches are enqueued in order on one idempotent producer, which keeps each partition's
    order, retries included, also across calls. The batches are closed: they go out at
    once instead of lingering for records nobody is about to add.
    """
    batches = _PartitionBatches(producer)
    for record in records:
        await batches.add(record)
    return asyncio.gather(*await batches.send_open())


class _PartitionBatches:
    """The open batch of each partition a call's records go to."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._placed: dict[tuple[str, bytes], int] = {}  # a key often recurs in a round
        self._open: dict[tuple[str, int], BatchBuilder] = {}
        self._sent: list[asyncio.Future[object]] = []

    async def add(self, record: OutgoingRecord) -> None:
        key = record.key.encode()
        place = (record.topic, await self._partition(record.topic, key))
        batch = self._open.get(place)
        if batch is not None and _appended(batch, key, record):
            return
        if batch is not None:
            await self._send(place, batch)  # full: it goes, the record opens the next one
        batch = self._open[place] = self._producer.create_batch()
        _appended(batch, key, record)  # an empty batch takes any record

    async def send_open(self) -> list[asyncio.Future[object]]:
        for place, batch in self._open.items():
            await self._send(place, batch)
        self._open.clear()
        return self._sent

    async def _send(self, place: tuple[str, int], batch: BatchBuilder) -> None:
        batch.close()
        topic, partition = place
        self._sent.append(await self._producer.send_batch(batch, topic, partition=partition))

    async def _partition(self, topic: str, key: bytes) -> int:
        placed = self._placed.get((topic, key))
        if placed is not None:
            return placed
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(
                await self._producer.partitions_for(topic)
            )
        partition: int = self._partitioner(key, partitions, partitions)
        self._placed[topic, key] = partition
        return partition


def _appended(batch: BatchBuilder, key: bytes, record: OutgoingRecord) -> bool:
    """False when the batch is full."""
    metadata = batch.append(key=key, value=record.value, timestamp=None, headers=record.headers)
    return metadata is not None


async def publish_all(producer: AIOKafkaProducer, records: Sequence[OutgoingRecord]) -> None:
    """Send records in order and wait until the broker acknowledged every one of them."""
    await (await send_all(producer, records))


async def topic_partitions(bootstrap: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the topics that exist (missing topics have none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t in existing]
        if not wanted:
            return []
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in sorted(topic["partitions"], key=lambda p: p["partition"])
    ]


CREATE_TOPICS_VARIABLE = "PORTAL_KAFKA_CREATE_TOPICS"  # ServiceSettings.kafka_create_topics


class MissingTopicsError(RuntimeError):
    """Topics the service needs do not exist, and creating them is not its job."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        super().__init__(
            f"Kafka topics missing: {', '.join(self.missing)}. {CREATE_TOPICS_VARIABLE} is "
            "false, so this service does not create them: the cluster's topic operator must "
            "(deploy/kubernetes: a KafkaTopic per topic)"
        )


async def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int = 3,
    replication: int | None = None,
    *,
    create: bool = True,
) -> None:
    """Make sure the topics exist (idempotent).

    Missing ones are created when `create` (a service passes its `kafka_create_topics`), with
    `replication` replicas or, when None, the cluster's `default.replication.factor` (1 on
    a dev broker, 3 on the replicated cluster). Otherwise a missing topic raises
    `MissingTopicsError` naming every one of them.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return
        if not create:
            raise MissingTopicsError(missing)
        factor = replication if replication is not None else await _default_replication(admin)
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [NewTopic(t, num_partitions=partitions, replication_factor=factor) for t in missing]
            )
    finally:
        await admin.close()


async def _default_replication(admin: AIOKafkaAdminClient) -> int:
    """The cluster's `default.replication.factor`, as one of its brokers reports it.

    aiokafka speaks CreateTopics up to v3, which cannot ask for the broker default (-1)."""
    metadata = await admin._client.fetch_all_metadata()
    broker = min(b.nodeId for b in metadata.brokers())
    resource = ConfigResource(
        ConfigResourceType.BROKER, str(broker), {"default.replication.factor": None}
    )
    responses = await admin.describe_configs([resource])
    for response in responses:
        for entry in response.to_object()["resources"][0]["config_entries"]:
            if entry["config_names"] == "default.replication.factor":
                return int(entry["config_value"])
    raise RuntimeError(f"broker {broker} did not report default.replication.factor")
