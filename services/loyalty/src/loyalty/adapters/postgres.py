"""The loyalty projections on PostgreSQL, and the unit of work that binds them to one
connection (inside one transaction). All of the service's SQL is here."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import date, datetime
from typing import Any

from pydantic_core import PydanticSerializationError, to_json
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.postgres import PostgresUnitOfWork
from servicekit.unit_of_work import Unstorable

from loyalty.domain import facts as f
from loyalty.domain.facts import CustomerFact, Fact
from loyalty.unit_of_work import Account, Settled, account_stream

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
_DECODERS: dict[str, Callable[[Any], object]] = {
    "date": date.fromisoformat,
    "datetime": datetime.fromisoformat,
    "tuple[str, ...]": tuple,
}
# Per fact type, worked out once: the payload's field names, and for decoding each
# field's converter from JSON (None: taken as it is). The hot paths (a batch of facts
# stored, a statement's facts read) then do no reflection per fact.
_PAYLOAD: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls) if f.name not in _COLUMNS) for cls in FACT_TYPES.values()
}
_Reader = tuple[str, Callable[[Any], object] | None]
_READERS: dict[str, tuple[type[Any], tuple[_Reader, ...]]] = {
    name: (
        cls,
        tuple(
            (n, _DECODERS.get(str(f.type))) for f in fields(cls) if (n := f.name) not in _COLUMNS
        ),
    )
    for name, cls in FACT_TYPES.items()
}
_JOB_LOCK = 0x10_7A17

# In primary-key order: consecutive rows land on the same index pages (measured: ~13% of
# the server's CPU per row), and inserts running at once (a replay's transactions and the
# live consumer's) take their key locks in one order. A batch's keys are unique (`_rows`),
# so the sort cannot reorder two versions of one fact.
_INSERT_FACTS = """
INSERT INTO facts (customer_id, event_id, fact_type, occurred_at, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
ORDER BY 1, 2
ON CONFLICT DO NOTHING
"""
# A batch of facts from a consumer or a replay: copied (binary COPY) into this session's
# staging table, emptied at every commit, then inserted from there as above. asyncpg
# checks every element of an array parameter with two abstract-class isinstance calls;
# COPY encodes the rows without them (measured, 1000-row batches, loaded: 16.0 -> 6.7 us
# of the service's CPU per row, for ~5 us more of the server's).
COPY_FROM = 64
_STAGE_FACTS = (
    "CREATE TEMP TABLE IF NOT EXISTS facts_in (customer_id text, event_id text,"
    " fact_type text, occurred_at timestamptz, payload text) ON COMMIT DELETE ROWS"
)
_INSERT_STAGED_FACTS = """
INSERT INTO facts (customer_id, event_id, fact_type, occurred_at, payload)
SELECT customer_id, event_id, fact_type, occurred_at, payload FROM facts_in
ORDER BY 1, 2
ON CONFLICT DO NOTHING
"""
# One statement, so one snapshot: the facts and the account stream's version are what
# was committed at the same moment (a decision recorded in between cannot hide). The
# facts: all, or (with `after`) only those after it; the settled count and checksum
# (with `settled_at`) of those at or before it. Four texts, not one with "$3 IS NULL OR"
# conditions: a prepared statement's generic plan then still reads a range of
# facts_by_time instead of every fact of the customer.
_VERSION = (
    "account AS (SELECT coalesce(max(stream_version), 0) AS version"
    " FROM events WHERE stream_id = $2)"
)
_SETTLED = {  # by settled_at given
    False: "settled AS (SELECT NULL::bigint AS count, NULL::bigint AS checksum)",
    True: "settled AS (SELECT count(*) AS count, coalesce(sum(hashtext(event_id)), 0) AS checksum"
    " FROM facts WHERE customer_id = $1 AND occurred_at <= $3)",
}
_FACTS = {  # by (after given, settled_at given): after is the last parameter
    (False, False): "",
    (False, True): "",
    (True, False): " AND occurred_at > $3",
    (True, True): " AND occurred_at > $4",
}
_ACCOUNT = {
    (after, settled): " ".join(
        (
            f"WITH {_VERSION}, {_SETTLED[settled]},",
            "fact AS (SELECT event_id, fact_type, occurred_at, payload",
            f"FROM facts WHERE customer_id = $1{_FACTS[after, settled]})",
            "SELECT account.version, settled.count, settled.checksum, fact.event_id,",
            "fact.fact_type, fact.occurred_at, fact.payload",
            "FROM account CROSS JOIN settled LEFT JOIN fact ON true",
        )
    )
    for after, settled in _FACTS
}


def encode(fact: Fact) -> str:
    """The fact's fields other than its columns, as compact JSON (dates as ISO dates,
    tuples as arrays)."""
    return to_json({name: getattr(fact, name) for name in _PAYLOAD[type(fact)]}).decode()


def decode(fact_type: str, event_id: str, occurred_at: datetime, payload: str) -> Fact:
    cls, readers = _READERS[fact_type]
    values = json.loads(payload)
    kwargs = {
        name: values[name] if convert is None else convert(values[name])
        for name, convert in readers
    }
    fact: Fact = cls(event_id=event_id, occurred_at=occurred_at, **kwargs)
    return fact


_Row = tuple[str, str, str, datetime, str]


def _rows(facts: Sequence[CustomerFact]) -> list[_Row]:
    """The rows to store: customer, event id, fact type, occurred_at, payload; of a fact
    given twice for one customer, the first (the first version stays, as across batches).
    A policy's fact is shared by its holders' rows, one after the other: encoded once."""
    rows: list[_Row] = []
    keys: set[tuple[str, str]] = set()
    last: Fact | None = None
    payload = ""
    for customer, fact in facts:
        key = (customer, fact.event_id)
        if key in keys:
            continue
        keys.add(key)
        if fact is not last:
            last, payload = fact, _storable(fact)
        rows.append((customer, fact.event_id, fact.__class__.__name__, fact.occurred_at, payload))
    return rows


def _storable(fact: Fact) -> str:
    try:
        return encode(fact)
    except PydanticSerializationError as exc:  # e.g. a lone surrogate in a string
        raise Unstorable(f"fact not storable as JSON: {exc}") from exc


class PostgresFacts:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, rows: Sequence[CustomerFact]) -> None:
        if not rows:
            return
        stored = _rows(rows)
        if len(stored) < COPY_FROM:  # a decision's fact, a small batch: one round trip
            columns = (list(column) for column in zip(*stored, strict=True))
            await self._conn.execute(_INSERT_FACTS, *columns)
            return
        await self._conn.execute(_STAGE_FACTS)
        await self._conn.copy_records_to_table("facts_in", records=stored)
        await self._conn.execute(_INSERT_STAGED_FACTS)

    async def account(
        self, customer_id: str, after: datetime | None = None, settled_at: datetime | None = None
    ) -> Account:
        query = _ACCOUNT[after is not None, settled_at is not None]
        arguments = [a for a in (settled_at, after) if a is not None]  # $3, then $4
        rows = await self._conn.fetch(query, customer_id, account_stream(customer_id), *arguments)
        facts = tuple(
            decode(row["fact_type"], row["event_id"], row["occurred_at"], row["payload"])
            for row in rows
            if row["event_id"] is not None
        )
        first = rows[0]
        settled = None
        if settled_at is not None:
            settled = Settled(settled_at, int(first["count"]), int(first["checksum"]))
        return Account(customer_id, int(first["version"]), facts, settled)

    async def customers(self, after: str, limit: int) -> list[str]:
        rows = await self._conn.fetch(
            "SELECT DISTINCT customer_id FROM facts WHERE customer_id > $1"
            " ORDER BY customer_id LIMIT $2",
            after,
            limit,
        )
        return [row["customer_id"] for row in rows]

    async def clear(self) -> None:
        await self._conn.execute("TRUNCATE facts")


class PostgresAnnouncements:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def first_time(self, customer_id: str, keys: Sequence[str]) -> set[str]:
        rows = await self._conn.fetch(
            "INSERT INTO announced (customer_id, entry_id) SELECT $1, unnest($2::text[])"
            " ON CONFLICT DO NOTHING RETURNING entry_id",
            customer_id,
            list(keys),
        )
        return {row["entry_id"] for row in rows}

    async def one_run_at_a_time(self) -> None:
        await self._conn.execute("SELECT pg_advisory_xact_lock($1)", _JOB_LOCK)


class PostgresStatements:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def save(self, customer_id: str, as_of: datetime, balance: int, membership: str) -> None:
        await self._conn.execute(
            "INSERT INTO statements (customer_id, as_of, balance, membership)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id) DO UPDATE"
            " SET as_of = excluded.as_of, balance = excluded.balance,"
            " membership = excluded.membership WHERE statements.as_of <= excluded.as_of",
            customer_id,
            as_of,
            balance,
            membership,
        )

    async def clear(self) -> None:
        await self._conn.execute("TRUNCATE statements")


class PostgresLoyaltyUnitOfWork(PostgresUnitOfWork):
    def __init__(self, conn: Connection, store: EventStore) -> None:
        super().__init__(conn, store)
        self.facts = PostgresFacts(conn)
        self.announcements = PostgresAnnouncements(conn)
        self.statements = PostgresStatements(conn)
