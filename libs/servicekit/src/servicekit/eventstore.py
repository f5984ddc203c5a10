"""Append-only event store on PostgreSQL with optimistic concurrency and a transactional outbox.

`append` writes the events and their outbox rows in the caller's transaction: either
both are committed or neither is, so an event is never stored without being published,
nor published without being stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TypeVar

import asyncpg
from contracts_schemas import Event, partition_key, topic_of
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import CloudEvent, encode

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
    "TopicOf",
]

T = TypeVar("T")


# One round trip: the version check, the events and their outbox rows. The data-modifying
# CTEs write only when the stream is still at the expected version; a concurrent writer
# that got there first surfaces as a unique violation on (stream_id, stream_version).
_APPEND = """
WITH current AS (
    SELECT coalesce(max(stream_version), 0) AS version FROM events WHERE stream_id = $1
), stored AS (
    INSERT INTO events (event_id, stream_id, stream_version, event_type, occurred_at, payload)
    SELECT e.event_id, $1, e.stream_version, e.event_type, e.occurred_at, e.payload
    FROM unnest($3::uuid[], $4::int[], $5::text[], $6::timestamptz[], $7::jsonb[])
        AS e(event_id, stream_version, event_type, occurred_at, payload)
    WHERE (SELECT version FROM current) = $2
), queued AS (
    INSERT INTO outbox (event_id, topic, partition_key, headers, payload)
    SELECT * FROM unnest($8::text[], $9::text[], $10::text[], $11::jsonb[], $12::bytea[])
    WHERE (SELECT version FROM current) = $2
)
SELECT version FROM current
"""
_INSERT_OUTBOX = """
INSERT INTO outbox (event_id, topic, partition_key, headers, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[])
"""


TopicOf = Callable[[Contract], str]


class EventStore:
    """`source` is the CloudEvents source of what this service publishes; `topic_for`
    routes each message (the registry's topic unless a deployment prefixes them)."""

    def __init__(self, source: str, topic_for: TopicOf = topic_of) -> None:
        self._source = source
        self._topic_for = topic_for

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
        for offset, event in enumerate(events, start=1):
            if event.aggregate_version != expected_version + offset:
                raise ValueError(
                    f"{type(event).__name__} has version {event.aggregate_version}, "
                    f"expected {expected_version + offset}"
                )
        cloud_events = self._encode(events)
        try:
            actual = await conn.fetchval(
                _APPEND,
                stream_id,
                expected_version,
                [e.event_id for e in events],
                [e.aggregate_version for e in events],
                [ce.type for ce in cloud_events],
                [e.occurred_at for e in events],
                [ce.data.decode() for ce in cloud_events],
                *self._outbox_columns(events, cloud_events),
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "events_event_id_unique":
                raise DuplicateEvent(str(exc)) from exc
            raise ConcurrencyConflict(stream_id, expected_version, None) from exc
        if actual != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version, actual)

    async def enqueue(self, conn: Connection, messages: Sequence[Contract]) -> None:
        """Queue messages in the outbox (same transaction as the caller's writes)."""
        await conn.execute(_INSERT_OUTBOX, *self._outbox_columns(messages, self._encode(messages)))

    def _encode(self, messages: Sequence[Contract]) -> list[CloudEvent]:
        traceparent = current_traceparent()
        return [encode(m, self._source, traceparent) for m in messages]

    def _outbox_columns(
        self, messages: Sequence[Contract], cloud_events: Sequence[CloudEvent]
    ) -> tuple[list[str], list[str], list[str], list[str], list[bytes]]:
        return (
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
