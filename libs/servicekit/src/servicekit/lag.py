"""Consumer lag per group and partition (OPS-2): end offset minus committed offset.

A light background loop (`lag_loop`) measures the groups a service consumes every
`every` seconds (15 by default, Prometheus's usual scrape interval), with one admin
client and one group-less consumer kept open between rounds: per round, one
OffsetFetch per group and one ListOffsets for all their partitions - a bounded cost,
independent of the traffic. A partition the group never committed counts from its
beginning (a new group starts at the earliest offset).

The gauge is `portal_consumer_lag{group, topic, partition}`; every instance of a service
reports the same figures, so rules take `max by (group, topic, partition)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from servicekit.kafka import servers, topic_partitions
from servicekit.logging import get_logger
from servicekit.metrics import CONSUMER_LAG, CONSUMER_LAG_UPDATED
from servicekit.runner import Loop

log = get_logger(__name__)

Groups = Mapping[str, Sequence[str]]  # group id -> the (prefixed) topics it consumes


def groups_of(stream: Any) -> dict[str, list[str]]:
    """The groups and topics of an `EventStream`'s subscribers (prefixed names), its
    dead-letter topics excluded."""
    groups: dict[str, list[str]] = {}
    for subscriber in getattr(stream.broker, "subscribers", ()):
        group = getattr(subscriber, "group_id", None)
        if not group:
            continue
        known = groups.setdefault(group, [])
        for topic in getattr(subscriber, "topic_names_for_subscribe", ()):
            if topic not in known:
                known.append(topic)
    return groups


class LagMonitor:
    def __init__(self, bootstrap: str, groups: Groups, client_id: str = "lag-monitor") -> None:
        self._bootstrap = bootstrap
        self._groups = {group: list(topics) for group, topics in groups.items()}
        self._client_id = client_id
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: dict[str, list[TopicPartition]] = {}

    async def measure(self) -> dict[str, dict[TopicPartition, int]]:
        """One round: every group's lag per partition, also set on the gauge."""
        admin, consumer = await self._clients()
        for group, topics in self._groups.items():
            if not self._partitions.get(group):
                self._partitions[group] = await topic_partitions(self._bootstrap, topics)
        every = sorted({tp for tps in self._partitions.values() for tp in tps})
        if not every:
            return {}
        ends: dict[TopicPartition, int] = await consumer.end_offsets(every)
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(every)
        lags: dict[str, dict[TopicPartition, int]] = {}
        now = time.time()
        for group, partitions in self._partitions.items():
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            lags[group] = {}
            for tp in partitions:
                done = committed.get(tp)
                position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                lag = max(ends[tp] - position, 0)
                lags[group][tp] = lag
                CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(lag)
            CONSUMER_LAG_UPDATED.labels(group).set(now)
        return lags

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=servers(self._bootstrap), client_id=self._client_id
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=servers(self._bootstrap),
                client_id=self._client_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            await admin.start()
            try:
                await consumer.start()
            except BaseException:
                await admin.close()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    async def run(self, stop: asyncio.Event, every: float = 15.0) -> None:
        """Measure every `every` seconds until `stop`; a broker away is retried next round
        (with new clients), never fatal."""
        try:
            while not stop.is_set():
                try:
                    await self.measure()
                except (KafkaError, OSError) as exc:
                    log.warning("consumer_lag_unmeasured", error=type(exc).__name__)
                    self._partitions.clear()
                    with contextlib.suppress(KafkaError, OSError):
                        await self.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=every)
        finally:
            await self.close()


def lag_loop(
    bootstrap: str, stream: Any, every: float = 15.0, client_id: str = "lag-monitor"
) -> Loop:
    """The service loop measuring the lag of `stream`'s groups (build it after the
    subscribers are registered): `servicekit.lag.lag_loop(settings.kafka_bootstrap, stream)`."""

    async def consumer_lag(stop: asyncio.Event) -> None:
        groups = groups_of(stream)
        if groups:
            await LagMonitor(bootstrap, groups, client_id).run(stop, every)

    return consumer_lag
