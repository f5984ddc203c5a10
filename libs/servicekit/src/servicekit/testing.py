"""Helpers for tests that run against the real PostgreSQL and Kafka of deploy/local.

Nothing here fakes a broker or a database: it names things uniquely so tests never see
each other's data, and reads topics the way an operator would.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from contracts_schemas import topic_of
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode

from servicekit.kafka import (
    OutgoingRecord,
    publish_all,
    records_up_to,
    topic_partitions,
    topic_reader,
)

T = TypeVar("T")


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


async def read_whole_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its end offsets now (no group, nothing committed)."""
    consumer = topic_reader(bootstrap)
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap, [topic])
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        return [r async for records in records_up_to(consumer, end) for r in records]
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


#: How long a test waits for a condition before it fails instead of hanging: a hang guard,
#: never a claim about speed - on a loaded two-core machine a consumer or a started process
#: can take far longer than on a quiet one (30 s ran out in soak runs).
HANG_GUARD_SECONDS = 120.0


async def until(
    check: Callable[[], Awaitable[T]], within: float = HANG_GUARD_SECONDS, every: float = 0.1
) -> T:
    """Awaits `check()` until it returns something truthy, and returns that; a test fails
    (never hangs) when it does not within `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not (result := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {within}s: {result!r}")
        await asyncio.sleep(every)
    return result


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """`app` over real HTTP on a free port of 127.0.0.1 (uvicorn, as in production); yields
    its base URL and shuts the server down after."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started or task.done()

    try:
        await until(started, within=30.0, every=0.02)
        if task.done():
            task.result()  # it failed to start: raise why
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
