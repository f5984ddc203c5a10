"""The outbox relay: publishes what `EventStore.append` queued, in order, at least once.

One relay instance per service is active at a time (a PostgreSQL advisory lock elects
it), so the order of the outbox is the order on each partition. A round's rows are marked
sent by deleting them: the record lives on in the topic (and an event in `events`), and a
delete costs the database half of what an update to `published_at` did. A crash after
the broker acknowledged but before the rows were deleted publishes those rows again on
restart; consumers absorb the duplicate through their inbox.

Rounds are pipelined when the relay is given a `send` (enqueue in order, acknowledgements
later): round N+1 is read and enqueued on the one idempotent producer while round N's
acknowledgements are still on their way, so each partition gets the rows in outbox order.
A round is marked sent only once all its acknowledgements arrived, and rounds are marked
in order: when one fails, neither it nor any later round is marked, and all of them are
read again (from the oldest unpublished row) after the back-off. The marking runs on a
second connection of the drain, next to the read of the following round (two backends:
neither waits for the other).

Rows with a `published_at` were marked by a relay of an earlier version (which updated
instead of deleting); they are skipped and purged after seven days, as they always were.

An event's outbox row is lean (see `servicekit.eventstore`): its body and envelope are
read from `events` here; rows queued by `enqueue` carry their whole record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import zlib
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError
from contracts_schemas.cloudevents import kafka_headers_of_bytes

from servicekit.db import DATABASE_TROUBLE, Connection
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
Send = Callable[[Sequence[OutgoingRecord]], Awaitable[Awaitable[object]]]
"""Enqueue the records in order on the producer; the returned awaitable completes when the
broker acknowledged every one of them (and raises when it refused one)."""

# The oldest unpublished rows after `$2` (the newest row in flight; 0 when none is), with
# the stored event of a lean row. A row committed late below `$2` is read once the
# pipeline is empty again, which it is whenever the relay catches up.
# What a round's send needs of a row, and nothing else: an event's envelope values as
# bytes (`convert_to`: no text decoded here to be encoded again), its time already in the
# form the relay always sent (`occurred_at.isoformat()` of the stored UTC time: microseconds
# only when there are any), the body as stored. Rows queued by `enqueue` carry their whole
# record in `headers` + `payload` instead (body NULL).
_COLUMNS = """
o.id, o.topic, o.partition_key, o.headers, o.payload,
convert_to(o.event_id, 'UTF8'), convert_to(e.event_type, 'UTF8'), convert_to(o.source, 'UTF8'),
convert_to(to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE to_char(e.occurred_at AT TIME ZONE 'UTC', 'US') WHEN '000000' THEN ''
              ELSE to_char(e.occurred_at AT TIME ZONE 'UTC', '.US') END || '+00:00', 'UTF8'),
convert_to(e.payload->>'aggregate_id', 'UTF8'), convert_to(o.traceparent, 'UTF8'),
convert_to(e.payload::text, 'UTF8') AS body
"""
# The oldest unpublished rows after `$2` (the newest row in flight; 0 when none is), with
# the stored event of a lean row. A row committed late below `$2` is read once the
# pipeline is empty again, which it is whenever the relay catches up.
_PENDING = f"""
SELECT {_COLUMNS}
FROM outbox o LEFT JOIN events e ON e.event_id = o.event_ref
WHERE o.published_at IS NULL AND o.id > $2 ORDER BY o.id LIMIT $1
"""  # noqa: S608 - constant text only
_MARK_SENT = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"

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


# Connections the leading relay keeps while it drains: its advisory lock, a round's read,
# the marking of acknowledged rounds.
RELAY_CONNECTIONS = 3


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Publish,
        *,
        lock_key: int,
        send: Send | None = None,
        pipeline_depth: int = 4,
        name: str = "outbox",
        batch_size: int = 1000,
        idle_interval: float = 0.05,
        queued: asyncio.Event | None = None,
        retention_rounds: int = 1000,
        measure_interval: float = 1.0,
    ) -> None:
        self._pool = pool
        self._publish = publish
        self._send = send
        self._depth = max(1, pipeline_depth) if send is not None else 1
        self._lock_key = lock_key
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._queued = queued
        self._retention_rounds = retention_rounds
        self._metrics_label = name
        self._measure_interval = measure_interval
        self._measured_at = float("-inf")
        self.published = 0

    async def publish_pending(self) -> int:
        """One round: publish the oldest unpublished rows, then mark them sent."""
        async with self._pool.acquire() as conn:
            ids, records = await read_pending(conn, self._batch_size)
            if not ids:
                return 0
            await self._publish(records)
            await conn.execute(_MARK_SENT, ids)
        self._count(len(ids))
        return len(ids)

    async def drain(self, between_rounds: Callable[[], Awaitable[object]] | None = None) -> int:
        """Publish until nothing is pending, up to `pipeline_depth` rounds in flight;
        returns the rows published. Raises (a `KafkaError` from the broker) with the rows
        of the failed round and of every later one left unmarked."""
        if self._send is None:
            total = 0
            while True:
                if between_rounds is not None:
                    await between_rounds()
                published = await self.publish_pending()
                total += published
                if published < self._batch_size:
                    return total
        send = self._send
        in_flight: deque[_Round] = deque()
        start = self.published
        next_read: asyncio.Future[tuple[list[int], list[OutgoingRecord]]] | None = None
        marks = _Marks(self._count_rounds)
        try:
            async with self._pool.acquire() as conn, self._pool.acquire() as mark_conn:
                marks.conn = mark_conn
                if between_rounds is not None:
                    await between_rounds()
                ids, records = await read_pending(conn, self._batch_size)
                while True:
                    next_read = None
                    if len(ids) == self._batch_size:
                        # The next round is read while this one is enqueued and the rounds
                        # acknowledged meanwhile are marked on a connection of their own:
                        # the database works next to this process, on two backends.
                        next_read = asyncio.ensure_future(
                            read_pending(conn, self._batch_size, ids[-1])
                        )
                    if ids:
                        acks = await send(records)
                        in_flight.append(_Round(ids, asyncio.ensure_future(acks)))
                    marks.add(await self._acknowledged(marks, in_flight, self._depth))
                    if next_read is not None:
                        ids, records = await next_read
                    else:
                        # Caught up: every round marked; unless nothing was left, read again
                        # from the oldest unpublished row (one committed late below the
                        # rounds that were in flight).
                        marks.add(await self._acknowledged(marks, in_flight, 0))
                        await marks.settled()
                        if not ids:
                            return self.published - start
                        if between_rounds is not None:
                            await between_rounds()
                        ids, records = await read_pending(conn, self._batch_size)
                        continue
                    if between_rounds is not None:
                        await between_rounds()
        finally:
            # Only after a failure: the read and the marking in progress finish before their
            # connections go back to the pool.
            for pending in (next_read, marks.marking):
                if pending is not None:
                    await asyncio.wait([pending])
                    _retrieved(pending)
            # Only after a failure: these rounds stay unmarked and are read again.
            for left in in_flight:
                left.acks.add_done_callback(_retrieved)

    async def _acknowledged(
        self, marks: _Marks, in_flight: deque[_Round], depth: int
    ) -> list[_Round]:
        """Take the oldest rounds off `in_flight` that are acknowledged - waiting for the
        oldest while `depth` or more are in flight (0: for all of them). When one failed,
        the rounds before it are marked sent before its error is raised."""
        acknowledged: list[_Round] = []
        try:
            while in_flight and (in_flight[0].acks.done() or len(in_flight) >= max(depth, 1)):
                await in_flight[0].acks
                acknowledged.append(in_flight.popleft())
        except Exception:
            marks.add(acknowledged)
            await marks.settled()
            raise
        return acknowledged

    def _count_rounds(self, rounds: list[_Round]) -> None:
        published = sum(len(r.ids) for r in rounds)
        if published:
            self._count(published)

    def _count(self, published: int) -> None:
        self.published += published
        OUTBOX_PUBLISHED.labels(self._metrics_label).inc(published)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set, while holding the relay lock of this service.

        A lost database connection (PostgreSQL restarted, the lock's session killed) is
        lost leadership, never the end of the relay: it backs off and stands for election
        again. The lock is a session's advisory lock, so the server frees it with the
        session and at most one relay leads at any moment; readiness meanwhile reports the
        database down (`Runtime.database_ready`)."""
        lost = 0
        while not stop.is_set():
            try:
                await self._elect_and_lead(stop)
                return
            except DATABASE_TROUBLE as exc:
                lost += 1
                log.warning("outbox_relay_lost_database", error=type(exc).__name__, lost=lost)
                await _sleep_unless(stop, min(0.5 * 2 ** min(lost, 4), 5.0))

    async def _elect_and_lead(self, stop: asyncio.Event) -> None:
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
                # A session already gone took its lock with it.
                with contextlib.suppress(*DATABASE_TROUBLE):
                    await lock_conn.execute("SELECT pg_advisory_unlock($1)", self._lock_key)

    async def _run_as_leader(self, stop: asyncio.Event, lock_conn: Connection) -> None:
        log.info("outbox_relay_started")
        rounds = 0
        failures = 0

        async def between_rounds() -> None:
            # Losing the lock connection loses leadership: stop rather than race a new leader.
            await lock_conn.fetchval("SELECT 1")
            await self._measure_now_and_then()

        while not stop.is_set():
            try:
                await self.drain(between_rounds)
            except KafkaError as exc:
                # The failed round and the later ones are unmarked: they go out again, in
                # order, once the broker is back.
                failures += 1
                OUTBOX_PUBLISH_FAILURES.labels(self._metrics_label).inc()
                log.warning("outbox_publish_failed", error=repr(exc), failures=failures)
                await _sleep_unless(stop, min(0.2 * 2**failures, 5.0))
                continue
            failures = 0
            rounds += 1
            if rounds % self._retention_rounds == 0:
                await self._purge_published()
            await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until the idle interval passed, `stop` is set or - with `queued`, the event store's
        - a transaction of this process queued rows and committed (rows of other
        processes wait for the interval). A commit during the round just drained set it
        already: the next round follows at once, and finds those rows."""
        if self._queued is None:
            await _sleep_unless(stop, self._idle_interval)
            return
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._queued.wait())]
        try:
            await asyncio.wait(waits, timeout=self._idle_interval, return_when=FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        self._queued.clear()

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


@dataclass(slots=True)
class _Round:
    ids: list[int]
    acks: asyncio.Future[object]

    @property
    def last_id(self) -> int:
        return self.ids[-1]


class _Marks:
    """Marks acknowledged rounds sent, one statement after the other on the drain's second
    connection, while the drain goes on reading and enqueuing; `count` once marked. A
    failed mark is raised by the next `add` or by `settled` (the rows stay unmarked and
    are published again: at least once)."""

    def __init__(self, count: Callable[[list[_Round]], None]) -> None:
        self.conn: Connection | None = None
        self.marking: asyncio.Future[None] | None = None
        self._count = count

    def add(self, rounds: list[_Round]) -> None:
        if not rounds:
            return
        previous = self.marking
        if previous is not None and previous.done():
            previous.result()  # a failed mark: stop here
            previous = None
        self.marking = asyncio.ensure_future(self._mark(previous, rounds))

    async def _mark(self, previous: asyncio.Future[None] | None, rounds: list[_Round]) -> None:
        if previous is not None:
            await previous
        assert self.conn is not None
        await _mark_sent(self.conn, _ids(rounds))
        self._count(rounds)

    async def settled(self) -> None:
        """Every round added so far marked (or the first failure raised)."""
        if self.marking is not None:
            marking, self.marking = self.marking, None
            await marking


async def read_pending(
    conn: Connection, limit: int, after: int = 0
) -> tuple[list[int], list[OutgoingRecord]]:
    """The oldest unpublished rows with an id above `after`: their ids and the records
    they stand for (a lean event row rebuilt from its stored event)."""
    rows = await conn.fetch(_PENDING, limit, after)
    return [row[0] for row in rows], [_record(*row) for row in rows]


async def _mark_sent(conn: Connection, ids: list[int]) -> None:
    if ids:
        await conn.execute(_MARK_SENT, ids)


def _ids(rounds: list[_Round]) -> list[int]:
    return [row_id for round_ in rounds for row_id in round_.ids]


def _retrieved(acks: asyncio.Future[Any]) -> None:
    """Consume the outcome of acknowledgements nobody awaits any more (no asyncio warning)."""
    if not acks.cancelled():
        acks.exception()


def _record(
    _id: int,
    topic: str,
    key: str,
    headers: str | None,
    payload: bytes | None,
    event_id: bytes,
    event_type: bytes,
    source: bytes,
    time: bytes,
    subject: bytes | None,
    traceparent: bytes | None,
    body: bytes | None,
) -> OutgoingRecord:
    """The row's record, built straight from the bytes the read returned (per published
    event: no envelope object, nothing decoded), the headers in `kafka_headers`' order."""
    if body is None:  # queued by `enqueue`: the whole record is in the row
        assert headers is not None  # the table's check: a whole row has both
        assert payload is not None
        whole = [(name, value.encode()) for name, value in json.loads(headers)]
        return OutgoingRecord(topic, key, bytes(payload), whole)
    envelope = kafka_headers_of_bytes(event_id, event_type, source, time, subject, traceparent)
    return OutgoingRecord(topic, key, body, envelope)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
