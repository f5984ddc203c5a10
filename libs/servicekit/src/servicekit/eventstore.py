"""Append-only event store on PostgreSQL with optimistic concurrency and a transactional outbox.

`append` writes the events and their outbox rows in the caller's transaction: either
both are committed or neither is, so an event is never stored without being published,
nor published without being stored.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

import asyncpg
from contracts_schemas import Event, partition_key, topic_of
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode

from servicekit.db import Connection
from servicekit.tracing import current_traceparent
from servicekit.unit_of_work import (
    ConcurrencyConflict,
    DuplicateEvent,
    RecordedEvent,
)

__all__ = [
    "ConcurrencyConflict",
    "DuplicateEvent",
    "EventStore",
    "RecordedEvent",
    "StreamAppend",
    "TopicOf",
]

T = TypeVar("T")


# One round trip: the version check, the events and their outbox rows. The data-modifying
# CTEs write only when the stream is still at the expected version; a concurrent writer
# that got there first surfaces as a unique violation on (stream_id, stream_version).
#
# An event's outbox row is lean: which stored event (`event_ref`), its topic, key, source
# and traceparent. The relay reads the body and the envelope from `events`, so an event is
# serialised once and stored once.
_APPEND = """
WITH current AS (
    SELECT coalesce(max(stream_version), 0) AS version FROM events WHERE stream_id = $1
), input AS (
    SELECT * FROM unnest($3::uuid[], $4::int[], $5::text[], $6::timestamptz[], $7::jsonb[],
                         $8::text[], $9::text[])
        AS e(event_id, stream_version, event_type, occurred_at, payload, topic, partition_key)
    WHERE (SELECT version FROM current) = $2
), stored AS (
    INSERT INTO events (event_id, stream_id, stream_version, event_type, occurred_at, payload)
    SELECT event_id, $1, stream_version, event_type, occurred_at, payload FROM input
), queued AS (
    INSERT INTO outbox (event_id, event_ref, topic, partition_key, source, traceparent)
    SELECT event_id::text, event_id, topic, partition_key, $10, $11 FROM input
)
SELECT version FROM current
"""

# Many streams in one round trip: every stream's version is checked, and only when none
# moved are the events and outbox rows written (in the order given). Returns the streams
# that moved; a concurrent writer racing this one surfaces as a unique violation.
_APPEND_MANY = """
WITH expected AS (
    SELECT x.stream_id, x.version,
           (SELECT coalesce(max(e.stream_version), 0) FROM events e
            WHERE e.stream_id = x.stream_id) AS actual
    FROM unnest($1::text[], $2::int[]) AS x(stream_id, version)
), moved AS (
    SELECT stream_id, version, actual FROM expected WHERE version <> actual
), input AS (
    SELECT * FROM unnest($3::text[], $4::uuid[], $5::int[], $6::text[], $7::timestamptz[],
                         $8::jsonb[], $9::text[], $10::text[])
        AS e(stream_id, event_id, stream_version, event_type, occurred_at, payload, topic,
             partition_key)
    WHERE NOT EXISTS (SELECT 1 FROM moved)
), stored AS (
    INSERT INTO events (event_id, stream_id, stream_version, event_type, occurred_at, payload)
    SELECT event_id, stream_id, stream_version, event_type, occurred_at, payload FROM input
), queued AS (
    INSERT INTO outbox (event_id, event_ref, topic, partition_key, source, traceparent)
    SELECT event_id::text, event_id, topic, partition_key, $11, $12 FROM input
)
SELECT stream_id, version, actual FROM moved
"""

_INSERT_OUTBOX = """
INSERT INTO outbox (event_id, topic, partition_key, headers, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[])
"""

# "Key (stream_id, stream_version)=(pol-1, 3) already exists."
_MOVED_STREAM = re.compile(r"\(stream_id, stream_version\)=\((?P<stream>.*), (?P<version>\d+)\)")


TopicOf = Callable[[Contract], str]
StreamAppend = tuple[str, int, Sequence[Event]]
"""(stream id, expected version, events) of `EventStore.append_many`."""


class EventStore:
    """`source` is the CloudEvents source of what this service publishes; `topic_for`
    routes each message (the registry's topic unless a deployment prefixes them).

    `queued` is set once a transaction of this process that queued outbox rows committed
    (`PostgresEventLog` arranges it through the unit of work's `after_commit`): the
    service's outbox relay waits for it between rounds, not only for its idle interval."""

    def __init__(self, source: str, topic_for: TopicOf = topic_of) -> None:
        self._source = source
        self._topic_for = topic_for
        self.queued = asyncio.Event()

    @property
    def source(self) -> str:
        return self._source

    async def append(
        self,
        conn: Connection,
        stream_id: str,
        expected_version: int,
        events: Sequence[Event],
    ) -> None:
        """Append `events` to a stream at `expected_version`, and queue them for publishing.

        Must run inside a transaction. Raises ConcurrencyConflict when the stream moved.
        """
        if not events:
            return
        _check_versions(expected_version, events)
        topic_for = self._topic_for
        try:
            actual = await conn.fetchval(
                _APPEND,
                stream_id,
                expected_version,
                [e.event_id for e in events],
                [e.aggregate_version for e in events],
                [e.type_name() for e in events],
                [e.occurred_at for e in events],
                [e.model_dump_json() for e in events],
                [topic_for(e) for e in events],
                [partition_key(e) for e in events],
                self._source,
                current_traceparent(),
            )
        except asyncpg.UniqueViolationError as exc:
            raise _unique_violation(exc, [stream_id], expected_version) from exc
        if actual != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version, actual)

    async def append_many(self, conn: Connection, appends: Sequence[StreamAppend]) -> None:
        """Append to many streams in ONE statement: `appends` are (stream id, expected
        version, events), each stream named once. Either every stream is still at its
        expected version and all events are stored and queued (in the order given), or
        nothing is written and ConcurrencyConflict names a stream that moved.

        Must run inside a transaction.
        """
        appends = [a for a in appends if a[2]]
        if not appends:
            return
        if len({stream_id for stream_id, _, _ in appends}) != len(appends):
            raise ValueError("append_many names a stream twice: merge its events into one entry")
        stream_ids: list[str] = []
        events: list[Event] = []
        for stream_id, expected_version, stream_events in appends:
            _check_versions(expected_version, stream_events)
            stream_ids += [stream_id] * len(stream_events)
            events += stream_events
        topic_for = self._topic_for
        try:
            moved = await conn.fetch(
                _APPEND_MANY,
                [stream_id for stream_id, _, _ in appends],
                [expected for _, expected, _ in appends],
                stream_ids,
                [e.event_id for e in events],
                [e.aggregate_version for e in events],
                [e.type_name() for e in events],
                [e.occurred_at for e in events],
                [e.model_dump_json() for e in events],
                [topic_for(e) for e in events],
                [partition_key(e) for e in events],
                self._source,
                current_traceparent(),
            )
        except asyncpg.UniqueViolationError as exc:
            expected_of = {stream_id: expected for stream_id, expected, _ in appends}
            raise _unique_violation(exc, list(expected_of), expected_of) from exc
        if moved:
            first = moved[0]
            raise ConcurrencyConflict(first["stream_id"], first["version"], first["actual"])

    async def enqueue(self, conn: Connection, messages: Sequence[Contract]) -> None:
        """Queue messages that are not stream events in the outbox (same transaction as
        the caller's writes): their rows carry the whole record, envelope and body."""
        if not messages:
            return
        traceparent = current_traceparent()
        cloud_events = [encode(m, self._source, traceparent) for m in messages]
        await conn.execute(
            _INSERT_OUTBOX,
            [ce.id for ce in cloud_events],
            [self._topic_for(m) for m in messages],
            [partition_key(m) for m in messages],
            [json.dumps(ce.header_pairs()) for ce in cloud_events],
            [ce.data for ce in cloud_events],
        )

    @staticmethod
    async def stream_version(conn: Connection, stream_id: str) -> int:
        version = await conn.fetchval(
            "SELECT max(stream_version) FROM events WHERE stream_id = $1", stream_id
        )
        return int(version or 0)

    @staticmethod
    async def read_stream(conn: Connection, stream_id: str) -> list[RecordedEvent]:
        rows = await conn.fetch(
            "SELECT global_position, event_id, stream_id, stream_version, event_type,"
            " occurred_at, payload FROM events WHERE stream_id = $1 ORDER BY stream_version",
            stream_id,
        )
        return [_recorded(row) for row in rows]

    @staticmethod
    async def read_all(
        conn: Connection, after_position: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        """Events in global order, for rebuilding projections from the log."""
        rows = await conn.fetch(
            "SELECT global_position, event_id, stream_id, stream_version, event_type,"
            " occurred_at, payload FROM events WHERE global_position > $1"
            " ORDER BY global_position LIMIT $2",
            after_position,
            limit,
        )
        return [_recorded(row) for row in rows]

    @staticmethod
    async def global_position(conn: Connection) -> int:
        return int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))


def _check_versions(expected_version: int, events: Sequence[Event]) -> None:
    for offset, event in enumerate(events, start=1):
        if event.aggregate_version != expected_version + offset:
            raise ValueError(
                f"{type(event).__name__} has version {event.aggregate_version}, "
                f"expected {expected_version + offset}"
            )


def _unique_violation(
    exc: asyncpg.UniqueViolationError, stream_ids: list[str], expected: int | dict[str, int]
) -> Exception:
    """A duplicate event id, or the stream a concurrent writer appended to first."""
    if exc.constraint_name == "events_event_id_unique":
        return DuplicateEvent(str(exc))
    found = _MOVED_STREAM.search(getattr(exc, "detail", None) or "")
    stream_id = found["stream"] if found and found["stream"] in stream_ids else stream_ids[0]
    version = expected if isinstance(expected, int) else expected[stream_id]
    return ConcurrencyConflict(stream_id, version, None)


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        global_position=row["global_position"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        event_type=row["event_type"],
        occurred_at=row["occurred_at"],
        payload=json.loads(row["payload"]),
    )
