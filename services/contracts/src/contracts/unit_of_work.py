"""The contracts service's unit of work: servicekit's event log and inbox, plus its own
repositories (PostgreSQL in `adapters.postgres`, in-memory twins in `adapters.memory`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from contracts_schemas.contracts import PolicyEvent
from servicekit.unit_of_work import UnitOfWork

from contracts.domain.idempotency import RecordedRequest, RequestKey
from contracts.domain.policy import PolicyState


class Policies(Protocol):
    """Policies on the event store, with the "who may see which policy" projection."""

    async def load(self, policy_id: str) -> PolicyState | None: ...

    async def save(self, state: PolicyState | None, events: Sequence[PolicyEvent]) -> None:
        """Append at the version the decision was taken on. Raises ConcurrencyConflict
        when the stream moved, DuplicateEvent when an event id is stored already."""
        ...

    async def load_many(self, policy_ids: Collection[str]) -> dict[str, PolicyState]:
        """The states of those of `policy_ids` that have a stream (one read for all)."""
        ...

    async def save_many(
        self, saves: Sequence[tuple[PolicyState | None, Sequence[PolicyEvent]]]
    ) -> None:
        """`save` of several policies (each named once) in one append: all or none."""
        ...

    def keep_when_committed(self, states: Iterable[PolicyState]) -> None:
        """States this transaction decided (a loaded state with the events it saved folded
        on): later transactions start from them once it committed; when it rolls back
        they are dropped, the kept states stay as they were."""
        ...

    async def of_customer(self, customer_id: str) -> list[PolicyState]: ...

    async def stored(self, event_ids: Sequence[UUID]) -> set[UUID]:
        """Those of `event_ids` that are stored already, in any policy's stream."""
        ...


class Activations(Protocol):
    """ID-3: who entered their activation code (from identity's AccountActivated)."""

    async def is_activated(self, customer_id: str) -> bool: ...

    async def mark_activated(self, activations: Sequence[tuple[str, datetime]]) -> None: ...


class Requests(Protocol):
    """Keys of requests already recorded (domain.idempotency)."""

    async def recorded(self, key: RequestKey) -> RecordedRequest | None: ...

    async def record(self, key: RequestKey, request: RecordedRequest) -> None:
        """Raises servicekit's `Conflict` when a concurrent transaction recorded the key
        first: the caller decides again and then sees that record."""
        ...

    async def recorded_many(
        self, keys: Collection[RequestKey]
    ) -> dict[RequestKey, RecordedRequest]:
        """The records of those of `keys` that have one (one read for all)."""
        ...

    async def record_many(self, requests: Mapping[RequestKey, RecordedRequest]) -> None:
        """`record` of several keys at once; `Conflict` if any was recorded concurrently."""
        ...


class ContractsUnitOfWork(UnitOfWork, Protocol):
    @property
    def policies(self) -> Policies: ...

    @property
    def activations(self) -> Activations: ...

    @property
    def requests(self) -> Requests: ...
