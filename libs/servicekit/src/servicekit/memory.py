"""In-memory twins of the unit of work, for unit tests of handlers (never for integration).

`InMemoryUnitOfWork` keeps the event log, the published messages and the inbox in plain
Python objects; a service's twin subclasses it and adds its repositories. A transaction
that raises leaves the state as it was before it began, as PostgreSQL would.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from contracts_schemas import Event
from contracts_schemas.base import Contract

from servicekit.unit_of_work import (
    ConcurrencyConflict,
    DuplicateEvent,
    RecordedEvent,
    Transactions,
    UnitOfWork,
)

U = TypeVar("U", bound=UnitOfWork)


class InMemoryEventLog:
    def __init__(self) -> None:
        self.streams: dict[str, list[Event]] = defaultdict(list)
        self.published: list[Contract] = []
        self._event_ids: set[str] = set()

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Event]) -> None:
        stream = self.streams[stream_id]
        if len(stream) != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version, len(stream))
        ids = [str(e.event_id) for e in events]
        if self._event_ids.intersection(ids) or len(set(ids)) != len(ids):
            raise DuplicateEvent(f"event id already stored in {stream_id}")
        self._event_ids.update(ids)
        stream.extend(events)
        self.published.extend(events)

    async def append_many(self, appends: Sequence[tuple[str, int, Sequence[Event]]]) -> None:
        """All or none, as one statement in PostgreSQL: every stream checked first."""
        appends = [a for a in appends if a[2]]
        if len({stream_id for stream_id, _, _ in appends}) != len(appends):
            raise ValueError("append_many names a stream twice: merge its events into one entry")
        for stream_id, expected_version, _ in appends:
            if len(self.streams.get(stream_id, ())) != expected_version:
                raise ConcurrencyConflict(
                    stream_id, expected_version, len(self.streams.get(stream_id, ()))
                )
        ids = [str(e.event_id) for _, _, events in appends for e in events]
        if self._event_ids.intersection(ids) or len(set(ids)) != len(ids):
            raise DuplicateEvent("event id already stored")
        for stream_id, expected_version, events in appends:
            await self.append(stream_id, expected_version, events)

    async def enqueue(self, messages: Sequence[Contract]) -> None:
        self.published.extend(messages)

    async def stream_version(self, stream_id: str) -> int:
        return len(self.streams.get(stream_id, ()))

    async def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        return [
            RecordedEvent(
                global_position=0,
                event_id=event.event_id,
                stream_id=stream_id,
                stream_version=version,
                event_type=event.type_name(),
                occurred_at=event.occurred_at,
                payload=event.model_dump(mode="json"),
            )
            for version, event in enumerate(self.streams.get(stream_id, ()), start=1)
        ]


class InMemoryInbox:
    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = defaultdict(set)

    async def remember(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        fresh = set(event_ids) - self.seen[consumer]
        self.seen[consumer].update(fresh)
        return fresh


class InMemoryUnitOfWork:
    """Subclasses add their repositories as further attributes in `__init__`."""

    def __init__(self) -> None:
        self.events = InMemoryEventLog()
        self.inbox = InMemoryInbox()


def memory_transactions(uow: U, attempts: int = 5) -> Transactions[U]:
    """Transactions over one in-memory unit of work; a failed one is rolled back."""

    @asynccontextmanager
    async def begin() -> AsyncIterator[U]:
        before: dict[str, Any] = copy.deepcopy(vars(uow))
        try:
            yield uow
        except BaseException:
            vars(uow).clear()
            vars(uow).update(before)
            raise

    return Transactions(begin, attempts)
