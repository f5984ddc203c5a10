"""The contracts service's repositories on PostgreSQL: all of its SQL lives here."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from uuid import UUID

from contracts_schemas.contracts import PolicyEvent
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.postgres import PostgresUnitOfWork
from servicekit.unit_of_work import AfterCommit, Conflict, EventLog

from contracts.adapters.codec import policy_event, stored_policy_event
from contracts.adapters.states import PolicyStates
from contracts.domain.idempotency import RecordedRequest, RequestKey
from contracts.domain.policy import PolicyState, fold


class PostgresPolicies:
    def __init__(
        self, events: EventLog, conn: Connection, states: PolicyStates, after_commit: AfterCommit
    ) -> None:
        self._events = events
        self._conn = conn
        self._states = states
        self._after_commit = after_commit
        self._wrote = False  # events of this transaction are visible to its reads

    async def load(self, policy_id: str) -> PolicyState | None:
        return fold(policy_event(r) for r in await self._events.read_stream(policy_id))

    async def save(self, state: PolicyState | None, events: Sequence[PolicyEvent]) -> None:
        if not events:
            return
        expected = 0 if state is None else state.version
        self._wrote = True
        await self._events.append(events[0].aggregate_id, expected, events)
        await self._index(events)

    async def load_many(self, policy_ids: Collection[str]) -> dict[str, PolicyState]:
        """One read for all: the events after each policy's kept state (all of them for a
        policy not kept), folded onto it."""
        known = {policy_id: self._states.get(policy_id) for policy_id in policy_ids}
        rows = await self._conn.fetch(
            "SELECT e.stream_id, e.event_type, e.payload FROM events e"
            " JOIN unnest($1::text[], $2::int[]) AS k(stream_id, after)"
            " ON e.stream_id = k.stream_id AND e.stream_version > k.after"
            " ORDER BY e.stream_id, e.stream_version",
            list(known),
            [0 if state is None else state.version for state in known.values()],
        )
        for stream_id, stream in itertools.groupby(rows, key=lambda r: str(r["stream_id"])):
            events = (stored_policy_event(r["event_type"], r["payload"]) for r in stream)
            state = fold(events, known[stream_id])
            if state is not None:
                known[stream_id] = state
                if not self._wrote:
                    self._states.keep(state)
        return {policy_id: state for policy_id, state in known.items() if state is not None}

    async def save_many(
        self, saves: Sequence[tuple[PolicyState | None, Sequence[PolicyEvent]]]
    ) -> None:
        saves = [(state, events) for state, events in saves if events]
        if not saves:
            return
        self._wrote = True
        await self._events.append_many(
            [(events[0].aggregate_id, 0 if state is None else state.version, events)
             for state, events in saves]
        )  # fmt: skip
        await self._index([e for _, events in saves for e in events])

    def keep_when_committed(self, states: Iterable[PolicyState]) -> None:
        decided = list(states)
        self._after_commit(lambda: self._states.keep_all(decided))

    async def _index(self, events: Sequence[PolicyEvent]) -> None:
        """Who may look each policy up (customer_policies), one statement."""
        pairs = {(customer, e.policy_id) for e in events for customer in e.customer_ids}
        await self._conn.execute(
            "INSERT INTO customer_policies (customer_id, policy_id)"
            " SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            [c for c, _ in pairs],
            [p for _, p in pairs],
        )

    async def of_customer(self, customer_id: str) -> list[PolicyState]:
        rows = await self._conn.fetch(
            "SELECT policy_id FROM customer_policies WHERE customer_id = $1 ORDER BY policy_id",
            customer_id,
        )
        states = [await self.load(row["policy_id"]) for row in rows]
        return [s for s in states if s is not None]

    async def stored(self, event_ids: Sequence[UUID]) -> set[UUID]:
        rows = await self._conn.fetch(
            "SELECT event_id FROM events WHERE event_id = ANY($1::uuid[])", list(event_ids)
        )
        return {row["event_id"] for row in rows}


class PostgresActivations:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def is_activated(self, customer_id: str) -> bool:
        found = await self._conn.fetchval(
            "SELECT 1 FROM activated_customers WHERE customer_id = $1", customer_id
        )
        return found is not None

    async def mark_activated(self, activations: Sequence[tuple[str, datetime]]) -> None:
        await self._conn.executemany(
            "INSERT INTO activated_customers (customer_id, activated_at) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            activations,
        )


class PostgresRequests:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def recorded(self, key: RequestKey) -> RecordedRequest | None:
        row = await self._conn.fetchrow(
            "SELECT fingerprint, event_ids FROM idempotency_records WHERE scope = $1 AND key = $2",
            key.scope,
            key.key,
        )
        if row is None:
            return None
        return RecordedRequest(row["fingerprint"], tuple(row["event_ids"]))

    async def record(self, key: RequestKey, request: RecordedRequest) -> None:
        # A concurrent transaction holding the same key makes this wait for its outcome;
        # when it committed, nothing is inserted and the decision must be taken again.
        inserted = await self._conn.fetchval(
            "INSERT INTO idempotency_records (scope, key, fingerprint, event_ids)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
            key.scope,
            key.key,
            request.fingerprint,
            list(request.event_ids),
        )
        if inserted is None:
            raise Conflict(f"request key {key.scope} {key.key!r} was recorded concurrently")

    async def recorded_many(
        self, keys: Collection[RequestKey]
    ) -> dict[RequestKey, RecordedRequest]:
        keys = list(keys)
        rows = await self._conn.fetch(
            "SELECT r.scope, r.key, r.fingerprint, r.event_ids FROM idempotency_records r"
            " JOIN unnest($1::text[], $2::text[]) AS k(scope, key)"
            " ON r.scope = k.scope AND r.key = k.key",
            [k.scope for k in keys],
            [k.key for k in keys],
        )
        return {
            RequestKey(row["scope"], row["key"]): RecordedRequest(
                row["fingerprint"], tuple(row["event_ids"])
            )
            for row in rows
        }

    async def record_many(self, requests: Mapping[RequestKey, RecordedRequest]) -> None:
        if not requests:
            return
        # As `record`: a key a concurrent transaction holds waits for its outcome; one it
        # committed is not inserted, and the batch must be decided again.
        inserted = await self._conn.fetchval(
            "WITH new AS (INSERT INTO idempotency_records (scope, key, fingerprint, event_ids)"
            " SELECT scope, key, fingerprint, event_ids::uuid[]"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " AS r(scope, key, fingerprint, event_ids)"
            " ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM new",
            [k.scope for k in requests],
            [k.key for k in requests],
            [r.fingerprint for r in requests.values()],
            ["{" + ",".join(str(i) for i in r.event_ids) + "}" for r in requests.values()],
        )
        if inserted != len(requests):
            raise Conflict(f"{len(requests) - inserted} request keys were recorded concurrently")


class PostgresContractsUnitOfWork(PostgresUnitOfWork):
    def __init__(
        self, conn: Connection, store: EventStore, states: PolicyStates | None = None
    ) -> None:
        super().__init__(conn, store)
        self.policies = PostgresPolicies(
            self.events, conn, PolicyStates() if states is None else states, self.after_commit
        )
        self.activations = PostgresActivations(conn)
        self.requests = PostgresRequests(conn)
