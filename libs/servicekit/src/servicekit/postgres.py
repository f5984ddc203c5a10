"""The PostgreSQL unit of work: one pooled connection, one transaction, bound repositories.

A service subclasses `PostgresUnitOfWork` to add its repositories (built on `self.conn`)
and hands `postgres_transactions` a factory for it. Errors of the database are
translated here, once, into what the callers can act on: a serialization failure or
deadlock is a `Conflict` (run again), a value the database refuses is `Unstorable`
(never retried; a consumer dead-letters the message).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
from contracts_schemas import Event
from contracts_schemas.base import Contract

from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.unit_of_work import Conflict, RecordedEvent, Transactions, UnitOfWork, Unstorable

U = TypeVar("U", bound=UnitOfWork)

_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
_REFUSED = (asyncpg.DataError, asyncpg.CheckViolationError, asyncpg.NotNullViolationError)


class PostgresEventLog:
    def __init__(self, store: EventStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Event]) -> None:
        await self._store.append(self._conn, stream_id, expected_version, events)

    async def append_many(self, appends: Sequence[tuple[str, int, Sequence[Event]]]) -> None:
        await self._store.append_many(self._conn, appends)

    async def enqueue(self, messages: Sequence[Contract]) -> None:
        await self._store.enqueue(self._conn, messages)

    async def stream_version(self, stream_id: str) -> int:
        return await self._store.stream_version(self._conn, stream_id)

    async def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        return await self._store.read_stream(self._conn, stream_id)


class PostgresInbox:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def remember(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        rows = await self._conn.fetch(
            "INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::text[])"
            " ON CONFLICT DO NOTHING RETURNING event_id",
            consumer,
            list(dict.fromkeys(event_ids)),
        )
        return {row["event_id"] for row in rows}


class PostgresUnitOfWork:
    """The event log and the inbox on one connection; subclasses add repositories."""

    def __init__(self, conn: Connection, store: EventStore) -> None:
        self.conn = conn
        self.events = PostgresEventLog(store, conn)
        self.inbox = PostgresInbox(conn)


def postgres_transactions(
    pool: asyncpg.Pool, unit_of_work: Callable[[Connection], U], attempts: int = 5
) -> Transactions[U]:
    """Transactions each on a connection taken from `pool` for it."""

    @asynccontextmanager
    async def begin() -> AsyncIterator[U]:
        async with pool.acquire() as conn, _transaction(conn, unit_of_work) as uow:
            yield uow

    return Transactions(begin, attempts)


@asynccontextmanager
async def _transaction(
    conn: Connection, unit_of_work: Callable[[Connection], U]
) -> AsyncIterator[U]:
    try:
        async with conn.transaction():
            yield unit_of_work(conn)
    except _RETRYABLE as exc:
        raise Conflict(str(exc)) from exc
    except _REFUSED as exc:
        raise Unstorable(f"{type(exc).__name__}: {exc}") from exc
