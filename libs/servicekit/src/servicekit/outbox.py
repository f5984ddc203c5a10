"""The outbox relay: publishes what `EventStore.append` queued, in order, at least once.

One relay instance per service is active at a time (a PostgreSQL advisory lock elects
it), so the order of the outbox is the order on each partition. A crash after the broker
acknowledged but before the rows were marked sent publishes those rows again on restart;
consumers absorb the duplicate through their inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from aiokafka.errors import KafkaError

from servicekit.db import Connection
from servicekit.kafka import OutgoingRecord
from servicekit.logging import get_logger
from servicekit.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_PUBLISHED,
)

log = get_logger(__name__)

Publish = Callable[[Sequence[OutgoingRecord]], Awaitable[None]]

_PENDING = """
SELECT id, topic, partition_key, headers, payload FROM outbox
WHERE published_at IS NULL ORDER BY id LIMIT $1
"""

# Bounded cost whatever the backlog: the count stops at BACKLOG_COUNT_LIMIT rows of the
# partial index, the oldest row is the first one of it.
BACKLOG_COUNT_LIMIT = 100_000
_BACKLOG = """
SELECT
  (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL
                         LIMIT 100000) AS pending) AS backlog,
  (SELECT EXTRACT(EPOCH FROM clock_timestamp() - created_at)::float8 FROM outbox
   WHERE published_at IS NULL ORDER BY id LIMIT 1) AS oldest_age
"""


def relay_lock_key(schema: str) -> int:
    return zlib.crc32(f"outbox-relay:{schema}".encode())


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Publish,
        *,
        lock_key: int,
        name: str = "outbox",
        batch_size: int = 1000,
        idle_interval: float = 0.05,
        retention_rounds: int = 1000,
        measure_interval: float = 1.0,
    ) -> None:
        self._pool = pool
        self._publish = publish
        self._lock_key = lock_key
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._retention_rounds = retention_rounds
        self._metrics_label = name
        self._measure_interval = measure_interval
        self._measured_at = float("-inf")
        self.published = 0

    async def publish_pending(self) -> int:
        """One round: publish the oldest unpublished rows, then mark them sent."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_PENDING, self._batch_size)
            if not rows:
                return 0
            await self._publish([_record(row) for row in rows])
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
        self.published += len(rows)
        OUTBOX_PUBLISHED.labels(self._metrics_label).inc(len(rows))
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set, while holding the relay lock of this service."""
        async with self._pool.acquire() as lock_conn:
            while not stop.is_set():
                if await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                    break
                await _sleep_unless(stop, 1.0)
            else:
                return
            try:
                await self._run_as_leader(stop, lock_conn)
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock($1)", self._lock_key)

    async def _run_as_leader(self, stop: asyncio.Event, lock_conn: Connection) -> None:
        log.info("outbox_relay_started")
        rounds = 0
        failures = 0
        while not stop.is_set():
            # Losing the lock connection loses leadership: stop rather than race a new leader.
            await lock_conn.fetchval("SELECT 1")
            await self._measure_now_and_then()
            try:
                published = await self.publish_pending()
            except KafkaError as exc:
                # Nothing was marked sent: the same rows go out again once the broker is back.
                failures += 1
                OUTBOX_PUBLISH_FAILURES.labels(self._metrics_label).inc()
                log.warning("outbox_publish_failed", error=repr(exc), failures=failures)
                await _sleep_unless(stop, min(0.2 * 2**failures, 5.0))
                continue
            failures = 0
            rounds += 1
            if rounds % self._retention_rounds == 0:
                await self._purge_published()
            if published < self._batch_size:
                await _sleep_unless(stop, self._idle_interval)

    async def _purge_published(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute("DELETE FROM outbox WHERE published_at < now() - interval '7 days'")

    async def measure(self) -> tuple[int, float]:
        """Set the backlog gauges (OPS-2): unpublished rows (counted up to
        BACKLOG_COUNT_LIMIT) and the age of the oldest of them in seconds (0 when none)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_BACKLOG)
        assert row is not None  # one row, always
        backlog, age = int(row["backlog"]), float(row["oldest_age"] or 0.0)
        OUTBOX_BACKLOG.labels(self._metrics_label).set(backlog)
        OUTBOX_OLDEST_AGE.labels(self._metrics_label).set(max(age, 0.0))
        return backlog, age

    async def _measure_now_and_then(self) -> None:
        """Only the leading relay measures, at most once per `measure_interval`; a broker
        that refuses every round still lets the backlog's age grow (and alert)."""
        if time.monotonic() - self._measured_at < self._measure_interval:
            return
        self._measured_at = time.monotonic()
        try:
            await self.measure()
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("outbox_measure_failed", error=type(exc).__name__)

    async def backlog(self) -> int:
        async with self._pool.acquire() as conn:
            return int(
                await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )


def _record(row: asyncpg.Record) -> OutgoingRecord:
    headers = [(name, value.encode()) for name, value in json.loads(row["headers"])]
    return OutgoingRecord(row["topic"], row["partition_key"], bytes(row["payload"]), headers)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
