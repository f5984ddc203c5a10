"""The PostgreSQL unit of work: one pooled connection, one transaction, bound repositories.

A service subclasses `PostgresUnitOfWork` to add its repositories (built on `self.conn`)
and hands `postgres_transactions` a factory for it. Errors of the database are
translated here, once, into what the callers can act on: a serialization failure or
deadlock is a `Conflict` (run again), a value the database refuses is `Unstorable`
(never retried; a consumer dead-letters the message).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from contracts_schemas import Event
from contracts_schemas.base import Contract

from servicekit.db import DATABASE_TROUBLE, Connection
from servicekit.eventstore import EventStore
from servicekit.unit_of_work import (
    AfterCommit,
    Conflict,
    RecordedEvent,
    Transactions,
    UnitOfWork,
    Unstorable,
)

U = TypeVar("U", bound=UnitOfWork)

_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
_REFUSED = (asyncpg.DataError, asyncpg.CheckViolationError, asyncpg.NotNullViolationError)


class PostgresEventLog:
    """The store on the transaction's connection; what it queues rings the store's
    `queued` once the transaction committed (the relay then need not wait for its poll)."""

    def __init__(self, store: EventStore, conn: Connection, after_commit: AfterCommit) -> None:
        self._store = store
        self._conn = conn
        self._after_commit = after_commit

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Event]) -> None:
        await self._store.append(self._conn, stream_id, expected_version, events)
        self._queued(len(events))

    async def append_many(self, appends: Sequence[tuple[str, int, Sequence[Event]]]) -> None:
        await self._store.append_many(self._conn, appends)
        self._queued(sum(len(events) for _, _, events in appends))

    async def enqueue(self, messages: Sequence[Contract]) -> None:
        await self._store.enqueue(self._conn, messages)
        self._queued(len(messages))

    def _queued(self, rows: int) -> None:
        if rows:
            self._after_commit(self._store.queued.set)

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
    """The event log and the inbox on one connection; subclasses add repositories (and
    register their own after-commit work with the same `after_commit`)."""

    def __init__(self, conn: Connection, store: EventStore) -> None:
        self.conn = conn
        self.after_commit = AfterCommit()
        self.events = PostgresEventLog(store, conn, self.after_commit)
        self.inbox = PostgresInbox(conn)


def postgres_transactions(
    pool: asyncpg.Pool, unit_of_work: Callable[[Connection], U], attempts: int = 5
) -> Transactions[U]:
    """Transactions each on a connection taken from `pool` for it (`held` makes the same
    transactions on one connection kept between them)."""
    return Transactions(PooledBegin(pool, unit_of_work), attempts)


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


class PooledBegin(Generic[U]):
    """`Transactions.begin` of `postgres_transactions`: a pooled connection per transaction."""

    def __init__(self, pool: asyncpg.Pool, unit_of_work: Callable[[Connection], U]) -> None:
        self.pool = pool
        self.unit_of_work = unit_of_work

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[U]:
        async with self.pool.acquire() as conn, _transaction(conn, self.unit_of_work) as uow:
            yield uow


class HeldConnection(Generic[U]):
    """`Transactions.begin` on one pooled connection kept from one transaction to the next
    (a stream subscriber's: its batches come one after the other), which saves the pool's
    acquire and reset - a round trip - per batch.

    The connection goes back to the pool when a transaction fails for any reason but a
    conflict or a refused value (a connection lost, a handler's error: the next transaction
    takes a fresh one), after `idle_seconds` without a transaction (a stopped subscriber
    never keeps the pool from closing), and on `close`. A connection asyncpg released
    itself because it was lost - its proxy detached, where even `is_closed()` raises - is
    dropped before use. One the server ended while asyncpg has not noticed yet (a restart,
    `pg_terminate_backend`) fails at BEGIN, before anything ran in it: it is given back
    and the transaction begins once more on a fresh connection.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        unit_of_work: Callable[[Connection], U],
        idle_seconds: float = 1.0,
    ) -> None:
        self._pool = pool
        self._unit_of_work = unit_of_work
        self._idle_seconds = idle_seconds
        self._conn: PoolConnectionProxy[Any] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._returning: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[U]:
        self._cancel_idle()
        try:
            async with contextlib.AsyncExitStack() as transaction:
                yield await self._begin(transaction)
        except (Conflict, Unstorable):
            self._idle_later()
            raise
        except BaseException:
            await self._give_back()
            raise
        self._idle_later()

    async def _begin(self, transaction: contextlib.AsyncExitStack) -> U:
        """The unit of work of a transaction begun on the kept connection, or on a fresh
        one when the kept one is gone or its BEGIN fails (nothing ran in it yet)."""
        if self._conn is not None and _usable(self._conn):
            try:
                return await self._enter(transaction, self._conn)
            except DATABASE_TROUBLE:
                pass
        await self._give_back()
        self._conn = await self._pool.acquire()
        return await self._enter(transaction, self._conn)

    async def _enter(self, transaction: contextlib.AsyncExitStack, conn: Connection) -> U:
        return await transaction.enter_async_context(_transaction(conn, self._unit_of_work))

    async def close(self) -> None:
        """Give the connection back to the pool now (the subscriber stopped)."""
        self._cancel_idle()
        await self._give_back()
        if self._returning:
            await asyncio.wait(self._returning)

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_later(self) -> None:
        self._idle = asyncio.get_running_loop().call_later(self._idle_seconds, self._on_idle)

    def _on_idle(self) -> None:
        self._idle = None
        task = asyncio.ensure_future(self._give_back())
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # A connection lost meanwhile is already back (release does nothing then).
            with contextlib.suppress(*DATABASE_TROUBLE):
                await self._pool.release(conn)


def _usable(conn: Connection) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # a detached proxy: asyncpg released it when it was lost
        return False


def held(transactions: Transactions[U]) -> Transactions[U]:
    """The same transactions on one connection kept between them (`HeldConnection`), when
    they are `postgres_transactions`; any others unchanged."""
    begin = transactions.begin
    if isinstance(begin, PooledBegin):
        return Transactions(HeldConnection(begin.pool, begin.unit_of_work), transactions.attempts)
    return transactions


async def release_held(transactions: Transactions[Any]) -> None:
    """Give back the connection `held` transactions keep (nothing for any others)."""
    begin = transactions.begin
    if isinstance(begin, HeldConnection):
        await begin.close()
