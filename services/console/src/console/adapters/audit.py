"""The console's audit trail in its own PostgreSQL schema (and an in-memory twin for unit
tests): every replay, every customer lookup with its reason, every job run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import asyncpg


@dataclass(frozen=True)
class ReplayRecord:
    operator: str
    kind: str  # kafka | notifier
    dead_letter: str
    outcome: str
    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    event_type: str | None = None
    event_id: str | None = None
    reason: str = ""
    replayed_at: datetime | None = None


class Audit(Protocol):
    async def replayed(self, record: ReplayRecord) -> None: ...

    async def replays(self, limit: int = 100) -> list[ReplayRecord]: ...

    async def replays_of(self, dead_letters: list[str]) -> dict[str, list[ReplayRecord]]: ...

    async def looked_up(self, operator: str, customer_id: str, reason: str) -> None: ...

    async def lookups(self, limit: int = 100) -> list[dict[str, Any]]: ...

    async def job_run(
        self, operator: str, kind: str, business_date: date, outcome: str
    ) -> None: ...


_REPLAY_COLUMNS = (
    "operator, kind, dead_letter, outcome, original_topic, original_partition,"
    " original_offset, event_type, event_id, reason"
)


def _replay(row: asyncpg.Record) -> ReplayRecord:
    return ReplayRecord(**dict(row))


class PostgresAudit:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def replayed(self, record: ReplayRecord) -> None:
        await self._pool.execute(
            f"INSERT INTO replays ({_REPLAY_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",  # noqa: S608
            record.operator,
            record.kind,
            record.dead_letter,
            record.outcome,
            record.original_topic,
            record.original_partition,
            record.original_offset,
            record.event_type,
            record.event_id,
            record.reason,
        )

    async def replays(self, limit: int = 100) -> list[ReplayRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_REPLAY_COLUMNS}, replayed_at FROM replays"  # noqa: S608
            " ORDER BY replay_id DESC LIMIT $1",
            limit,
        )
        return [_replay(r) for r in rows]

    async def replays_of(self, dead_letters: list[str]) -> dict[str, list[ReplayRecord]]:
        rows = await self._pool.fetch(
            f"SELECT {_REPLAY_COLUMNS}, replayed_at FROM replays"  # noqa: S608
            " WHERE dead_letter = ANY($1::text[]) ORDER BY replay_id",
            dead_letters,
        )
        found: dict[str, list[ReplayRecord]] = {}
        for row in rows:
            found.setdefault(row["dead_letter"], []).append(_replay(row))
        return found

    async def looked_up(self, operator: str, customer_id: str, reason: str) -> None:
        await self._pool.execute(
            "INSERT INTO customer_lookups (operator, customer_id, reason) VALUES ($1, $2, $3)",
            operator,
            customer_id,
            reason,
        )

    async def lookups(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT operator, looked_up_at, customer_id, reason FROM customer_lookups"
            " ORDER BY lookup_id DESC LIMIT $1",
            limit,
        )
        return [dict(r) for r in rows]

    async def job_run(self, operator: str, kind: str, business_date: date, outcome: str) -> None:
        await self._pool.execute(
            "INSERT INTO job_runs (operator, kind, business_date, outcome) VALUES ($1,$2,$3,$4)",
            operator,
            kind,
            business_date,
            outcome,
        )


@dataclass
class MemoryAudit:
    replay_rows: list[ReplayRecord] = field(default_factory=list)
    lookup_rows: list[dict[str, Any]] = field(default_factory=list)
    job_rows: list[dict[str, Any]] = field(default_factory=list)

    async def replayed(self, record: ReplayRecord) -> None:
        self.replay_rows.append(
            ReplayRecord(**{**record.__dict__, "replayed_at": datetime.now(UTC)})
        )

    async def replays(self, limit: int = 100) -> list[ReplayRecord]:
        return list(reversed(self.replay_rows))[:limit]

    async def replays_of(self, dead_letters: list[str]) -> dict[str, list[ReplayRecord]]:
        found: dict[str, list[ReplayRecord]] = {}
        for row in self.replay_rows:
            if row.dead_letter in dead_letters:
                found.setdefault(row.dead_letter, []).append(row)
        return found

    async def looked_up(self, operator: str, customer_id: str, reason: str) -> None:
        if len(reason.strip()) < 3:
            raise ValueError("a lookup needs its reason")
        self.lookup_rows.append(
            {
                "operator": operator,
                "customer_id": customer_id,
                "reason": reason,
                "looked_up_at": datetime.now(UTC),
            }
        )

    async def lookups(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(reversed(self.lookup_rows))[:limit]

    async def job_run(self, operator: str, kind: str, business_date: date, outcome: str) -> None:
        self.job_rows.append(
            {"operator": operator, "kind": kind, "business_date": business_date, "outcome": outcome}
        )
