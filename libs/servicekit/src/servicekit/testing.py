"""Helpers for tests that run against the real PostgreSQL and Kafka of deploy/local.

Nothing here fakes a broker or a database: it names things uniquely so tests never see
each other's data, and reads topics the way an operator would.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from contracts_schemas import topic_of
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode

from servicekit.kafka import OutgoingRecord, publish_all


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def required_env(name: str) -> str:
    """Integration tests fail - never skip - when the platform was not started."""
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run the tests with `make test`, which starts PostgreSQL and Kafka"
        )
    return value


async def read_topic(
    bootstrap: str, topic: str, *, at_least: int, wait_seconds: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning, waiting until there are `at_least`.

    No consumer group: all partitions are read from the earliest offset, nothing is
    committed, so reading changes nothing for the services.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=500,
    )
    await consumer.start()
    try:
        consumer.subscribe([topic])
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while len(records) < at_least and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
        return records
    finally:
        await consumer.stop()


async def publish(
    producer: AIOKafkaProducer, *messages: Contract, prefix: str = "", source: str = "/test"
) -> None:
    """Publish contracts as their owning system would: CloudEvents on their (prefixed) topic,
    keyed by aggregate."""
    records = []
    for message in messages:
        cloud_event = encode(message, source)
        key = cloud_event.subject or cloud_event.id
        topic = prefix + topic_of(message)
        records.append(OutgoingRecord(topic, key, cloud_event.data, cloud_event.headers()))
    await publish_all(producer, records)


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode()
    return None
