"""In-memory twins of the contracts repositories, for unit tests of the handlers.

They keep the semantics of the PostgreSQL ones: appends check the stream version and
event id uniqueness (servicekit's in-memory event log), a request key is recorded once,
`load_many` folds only the events after a kept state and what a transaction decided is
kept only once it committed (the unit of work's `after_commit`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from uuid import UUID

from contracts_schemas.contracts import PolicyEvent
from servicekit.memory import InMemoryEventLog, InMemoryUnitOfWork
from servicekit.unit_of_work import AfterCommit, Conflict

from contracts.adapters.codec import policy_event
from contracts.adapters.states import PolicyStates
from contracts.domain.idempotency import RecordedRequest, RequestKey
from contracts.domain.policy import PolicyState, fold


class InMemoryPolicies:
    def __init__(
        self, events: InMemoryEventLog, states: PolicyStates, after_commit: AfterCommit
    ) -> None:
        self._events = events
        self.states = states
        self._after_commit = after_commit
        self._wrote = False  # as PostgreSQL: this transaction's events are in its reads
        self.customer_policies: set[tuple[str, str]] = set()

    async def load(self, policy_id: str) -> PolicyState | None:
        return fold(policy_event(r) for r in await self._events.read_stream(policy_id))

    async def save(self, state: PolicyState | None, events: Sequence[PolicyEvent]) -> None:
        if not events:
            return
        expected = 0 if state is None else state.version
        self._writing()
        await self._events.append(events[0].aggregate_id, expected, events)
        self.customer_policies |= {(c, e.policy_id) for e in events for c in e.customer_ids}

    async def load_many(self, policy_ids: Collection[str]) -> dict[str, PolicyState]:
        """As PostgreSQL's: the events after each kept state, folded onto it."""
        found: dict[str, PolicyState] = {}
        for policy_id in policy_ids:
            kept = self.states.get(policy_id)
            after = 0 if kept is None else kept.version
            stream = await self._events.read_stream(policy_id)
            state = fold((policy_event(r) for r in stream if r.stream_version > after), kept)
            if state is None:
                continue
            found[policy_id] = state
            if state is not kept and not self._wrote:
                self.states.keep(state)
        return found

    async def save_many(
        self, saves: Sequence[tuple[PolicyState | None, Sequence[PolicyEvent]]]
    ) -> None:
        saves = [(state, events) for state, events in saves if events]
        if saves:
            self._writing()
        await self._events.append_many(
            [(events[0].aggregate_id, 0 if state is None else state.version, events)
             for state, events in saves]
        )  # fmt: skip
        self.customer_policies |= {
            (c, e.policy_id) for _, events in saves for e in events for c in e.customer_ids
        }

    def keep_when_committed(self, states: Iterable[PolicyState]) -> None:
        decided = list(states)
        self._after_commit(lambda: self.states.keep_all(decided))

    def _writing(self) -> None:
        """The next transaction on this same unit of work starts without writes again
        (a rolled-back one is restored to before it by `memory_transactions`)."""
        if not self._wrote:
            self._wrote = True
            self._after_commit(self._committed)

    def _committed(self) -> None:
        self._wrote = False

    async def of_customer(self, customer_id: str) -> list[PolicyState]:
        ids = sorted(p for c, p in self.customer_policies if c == customer_id)
        states = [await self.load(policy_id) for policy_id in ids]
        return [s for s in states if s is not None]

    async def stored(self, event_ids: Sequence[UUID]) -> set[UUID]:
        every = {e.event_id for stream in self._events.streams.values() for e in stream}
        return every.intersection(event_ids)


class InMemoryActivations:
    def __init__(self) -> None:
        self.activated: dict[str, datetime] = {}

    async def is_activated(self, customer_id: str) -> bool:
        return customer_id in self.activated

    async def mark_activated(self, activations: Sequence[tuple[str, datetime]]) -> None:
        for customer_id, at in activations:
            self.activated.setdefault(customer_id, at)


class InMemoryRequests:
    def __init__(self) -> None:
        self.records: dict[RequestKey, RecordedRequest] = {}

    async def recorded(self, key: RequestKey) -> RecordedRequest | None:
        return self.records.get(key)

    async def record(self, key: RequestKey, request: RecordedRequest) -> None:
        if key in self.records:
            raise Conflict(f"request key {key.scope} {key.key!r} was recorded concurrently")
        self.records[key] = request

    async def recorded_many(
        self, keys: Collection[RequestKey]
    ) -> dict[RequestKey, RecordedRequest]:
        return {key: self.records[key] for key in keys if key in self.records}

    async def record_many(self, requests: Mapping[RequestKey, RecordedRequest]) -> None:
        if any(key in self.records for key in requests):
            raise Conflict(f"request keys {list(requests)!r} were recorded concurrently")
        self.records.update(requests)


class InMemoryContractsUnitOfWork(InMemoryUnitOfWork):
    """One unit of work for every transaction (servicekit's `memory_transactions` rolls
    its state back); `states` is shared by them and never rolled back, as PostgreSQL's."""

    def __init__(self, states: PolicyStates | None = None) -> None:
        super().__init__()
        self.after_commit = AfterCommit()
        self.policies = InMemoryPolicies(
            self.events, PolicyStates() if states is None else states, self.after_commit
        )
        self.activations = InMemoryActivations()
        self.requests = InMemoryRequests()
