"""The facts table: every input fact, stored once per customer it concerns."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import date, datetime
from typing import Any

from servicekit.db import Connection

from loyalty.domain import facts as f
from loyalty.domain.facts import Fact

FACT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        f.CustomerRegistered,
        f.Enrolled,
        f.PolicyIssued,
        f.PolicyholdersChanged,
        f.PremiumPaid,
        f.PolicyCancelled,
        f.EmailInsteadOfLetterActivated,
        f.EmailInsteadOfLetterDeactivated,
        f.AccountCancelled,
        f.ServiceUsed,
        f.RewardRedeemed,
    )
}
_COLUMNS = frozenset({"event_id", "occurred_at"})
_DECODERS: dict[str, Any] = {
    "date": date.fromisoformat,
    "datetime": datetime.fromisoformat,
    "tuple[str, ...]": tuple,
}

CustomerFact = tuple[str, Fact]

_INSERT = """
INSERT INTO facts (customer_id, event_id, fact_type, occurred_at, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[])
ON CONFLICT DO NOTHING
"""


def encode(fact: Fact) -> str:
    payload = {
        field.name: _plain(getattr(fact, field.name))
        for field in fields(fact)
        if field.name not in _COLUMNS
    }
    return json.dumps(payload, separators=(",", ":"))


def decode(fact_type: str, event_id: str, occurred_at: datetime, payload: str) -> Fact:
    cls = FACT_TYPES[fact_type]
    values = json.loads(payload)
    kwargs = {
        field.name: _DECODERS.get(str(field.type), _same)(values[field.name])
        for field in fields(cls)
        if field.name not in _COLUMNS
    }
    fact: Fact = cls(event_id=event_id, occurred_at=occurred_at, **kwargs)
    return fact


def _plain(value: object) -> object:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def _same(value: object) -> object:
    return value


async def add_facts(conn: Connection, rows: Sequence[CustomerFact]) -> None:
    """Store facts; a fact already stored for that customer is left as it is (LOY-12)."""
    if not rows:
        return
    await conn.execute(
        _INSERT,
        [customer for customer, _ in rows],
        [fact.event_id for _, fact in rows],
        [type(fact).__name__ for _, fact in rows],
        [fact.occurred_at for _, fact in rows],
        [encode(fact) for _, fact in rows],
    )


async def facts_of(conn: Connection, customer_ids: Iterable[str]) -> dict[str, list[Fact]]:
    rows = await conn.fetch(
        "SELECT customer_id, event_id, fact_type, occurred_at, payload::text AS payload"
        " FROM facts WHERE customer_id = ANY($1::text[])",
        list(customer_ids),
    )
    found: dict[str, list[Fact]] = defaultdict(list)
    for row in rows:
        found[row["customer_id"]].append(
            decode(row["fact_type"], row["event_id"], row["occurred_at"], row["payload"])
        )
    return found


async def customers_with_facts(conn: Connection, after: str = "", limit: int = 500) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT customer_id FROM facts WHERE customer_id > $1"
        " ORDER BY customer_id LIMIT $2",
        after,
        limit,
    )
    return [row["customer_id"] for row in rows]
