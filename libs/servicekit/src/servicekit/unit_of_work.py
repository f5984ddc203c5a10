"""The unit of work: one transaction, with the service's repositories as attributes.

Handlers take a command or event and a unit of work that is already inside its
transaction; they never commit, open connections or write SQL. Whoever calls them (an
HTTP entrypoint through `Transactions.execute`, or an inbox subscriber) owns the
transaction: it commits when the handler returns and rolls back when it raises.

Every service's unit of work has at least the event log and the inbox; a service adds
its own repositories in a subclass (PostgreSQL) and in its in-memory twin (unit tests).

What may only happen once the transaction committed - keeping what it decided in a
memory shared with later transactions - a repository hands to the unit of work's
`after_commit` (an `AfterCommit`, when the unit of work has one): `Transactions.run` calls
it after the commit, and drops it unrun when the transaction rolled back or failed to
commit, whichever unit of work (PostgreSQL or in-memory) it ran on.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from contracts_schemas import Event
from contracts_schemas.base import Contract

T = TypeVar("T")
C = TypeVar("C")


class Conflict(Exception):
    """Another transaction changed what this one decided on: decide again on fresh state."""


class ConcurrencyConflict(Conflict):
    """Another writer appended to the stream since the caller read it."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int | None) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual_version}, expected {expected_version}"
        )
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class DuplicateEvent(Exception):
    """An event with this id is stored already (a retried command derived the same id)."""


class Unstorable(Exception):
    """The database refuses the data itself (not a passing fault): retrying cannot help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    global_position: int
    event_id: UUID
    stream_id: str
    stream_version: int
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]


class EventLog(Protocol):
    """The service's append-only event store and its outbox, inside the transaction."""

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[Event]
    ) -> None: ...

    async def append_many(self, appends: Sequence[tuple[str, int, Sequence[Event]]]) -> None:
        """(stream id, expected version, events) of many streams, all or none."""
        ...

    async def enqueue(self, messages: Sequence[Contract]) -> None:
        """Publish messages that are not events of a stream (same transaction)."""
        ...

    async def stream_version(self, stream_id: str) -> int: ...

    async def read_stream(self, stream_id: str) -> list[RecordedEvent]: ...


class Inbox(Protocol):
    async def remember(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Record the ids as processed by `consumer`; returns those not seen before."""
        ...


class UnitOfWork(Protocol):
    """Read-only members, so implementations may narrow them (an InMemoryEventLog is an
    EventLog); a service's protocol declares its repositories the same way."""

    @property
    def events(self) -> EventLog: ...

    @property
    def inbox(self) -> Inbox: ...


U = TypeVar("U", bound=UnitOfWork)


class AfterCommit:
    """Callbacks a unit of work runs once its transaction committed, never otherwise.

    A repository registers one (`after_commit(callback)`) for what must not outlive a
    rolled-back transaction, e.g. a state it decided, kept for later transactions.
    `Transactions.run` calls `committed()` after the commit and `discard()` when the
    transaction did not commit (the work raised, the commit failed, a conflict retries).
    """

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def committed(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def discard(self) -> None:
        self._callbacks = []


def _after_commit(uow: object) -> AfterCommit | None:
    hooks = getattr(uow, "after_commit", None)
    return hooks if isinstance(hooks, AfterCommit) else None


@dataclass(frozen=True, slots=True)
class Transactions(Generic[U]):
    """Runs work in one transaction, again on fresh state when a conflict says so."""

    begin: Callable[[], AbstractAsyncContextManager[U]]
    attempts: int = 5

    async def run(self, work: Callable[[U], Awaitable[T]]) -> T:
        """`work(uow)` in a transaction; the unit of work's `after_commit` callbacks run
        once it committed (module text)."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._once(work)
            except Conflict:
                if attempt == self.attempts:
                    raise
        raise AssertionError("unreachable")

    async def _once(self, work: Callable[[U], Awaitable[T]]) -> T:
        hooks: AfterCommit | None = None
        try:
            async with self.begin() as uow:
                hooks = _after_commit(uow)
                result = await work(uow)
        except BaseException:
            if hooks is not None:
                hooks.discard()
            raise
        if hooks is not None:
            hooks.committed()
        return result

    async def execute(self, handler: Callable[[C, U], Awaitable[T]], command: C) -> T:
        """`handler(command, uow)` in a transaction of its own."""
        return await self.run(functools.partial(handler, command))
