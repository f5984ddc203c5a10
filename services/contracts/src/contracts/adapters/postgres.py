"""The contracts service's repositories on PostgreSQL: all of its SQL lives here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from contracts_schemas.contracts import PolicyEvent
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.postgres import PostgresUnitOfWork
from servicekit.unit_of_work import Conflict, EventLog

from contracts.adapters.codec import policy_event
from contracts.domain.idempotency import RecordedRequest, RequestKey
from contracts.domain.policy import PolicyState, fold


class PostgresPolicies:
    def __init__(self, events: EventLog, conn: Connection) -> None:
        self._events = events
        self._conn = conn

    async def load(self, policy_id: str) -> PolicyState | None:
        return fold(policy_event(r) for r in await self._events.read_stream(policy_id))

    async def save(self, state: PolicyState | None, events: Sequence[PolicyEvent]) -> None:
        if not events:
            return
        expected = 0 if state is None else state.version
        await self._events.append(events[0].aggregate_id, expected, events)
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


class PostgresContractsUnitOfWork(PostgresUnitOfWork):
    def __init__(self, conn: Connection, store: EventStore) -> None:
        super().__init__(conn, store)
        self.policies = PostgresPolicies(self.events, conn)
        self.activations = PostgresActivations(conn)
        self.requests = PostgresRequests(conn)
