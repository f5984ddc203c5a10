"""Policies on the event store: load by folding the stream, save with the projections."""

from __future__ import annotations

from collections.abc import Sequence

from contracts_schemas import REGISTRY
from contracts_schemas.contracts import PolicyEvent
from servicekit.db import Connection
from servicekit.eventstore import EventStore, RecordedEvent

from contracts.domain.policy import PolicyState, fold


def _decode(recorded: RecordedEvent) -> PolicyEvent:
    event = REGISTRY[recorded.event_type].model.model_validate(recorded.payload)
    assert isinstance(event, PolicyEvent)
    return event


class PolicyRepository:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def load(self, conn: Connection, policy_id: str) -> PolicyState | None:
        return fold(_decode(r) for r in await self._store.read_stream(conn, policy_id))

    async def save(
        self, conn: Connection, state: PolicyState | None, events: Sequence[PolicyEvent]
    ) -> None:
        """Append at the version the decision was taken on; raises ConcurrencyConflict."""
        if not events:
            return
        expected = 0 if state is None else state.version
        await self._store.append(conn, events[0].aggregate_id, expected, events)
        pairs = {(customer, e.policy_id) for e in events for customer in e.customer_ids}
        await conn.execute(
            "INSERT INTO customer_policies (customer_id, policy_id)"
            " SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            [c for c, _ in pairs],
            [p for _, p in pairs],
        )

    async def of_customer(self, conn: Connection, customer_id: str) -> list[PolicyState]:
        ids = await conn.fetch(
            "SELECT policy_id FROM customer_policies WHERE customer_id = $1 ORDER BY policy_id",
            customer_id,
        )
        states = [await self.load(conn, row["policy_id"]) for row in ids]
        return [s for s in states if s is not None]


async def is_activated(conn: Connection, customer_id: str) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM activated_customers WHERE customer_id = $1", customer_id
    )
    return found is not None


async def mark_activated(conn: Connection, rows: Sequence[tuple[str, object]]) -> None:
    await conn.executemany(
        "INSERT INTO activated_customers (customer_id, activated_at) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING",
        rows,
    )
