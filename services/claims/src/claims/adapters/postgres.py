"""PostgreSQL repositories of the claims service and its unit of work. All SQL lives here.
Attachment bytes are in `blobs` (servicekit.uploads.PostgresBlobStore), on the same
connection: a refused request rolls back with nothing half-stored."""

# ruff: noqa: S608 - the f-strings splice only the fixed column lists defined below

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import asyncpg
from contracts_schemas.claims import ClaimStatus, ClaimType
from contracts_schemas.common import Carrier, NotificationChannel, ProductLine
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.postgres import PostgresUnitOfWork
from servicekit.unit_of_work import Conflict
from servicekit.uploads import PostgresBlobStore

from claims.domain.model import (
    Attachment,
    Claim,
    HandledMessage,
    HistoryEntry,
    IdempotencyRecord,
    NotTracked,
    Policy,
)

_POLICY_COLUMNS = (
    "policy_id, policy_number, product_line, carrier, policyholder_ids, insured_person_ids,"
    " visible_to_insured, start_date, cancelled_from, version"
)
_CLAIM_COLUMNS = (
    "claim_id, claim_number, customer_id, policy_id, policy_number, claim_type, product_line,"
    " carrier, incident_date, place, description, reported_at, not_tracked, status,"
    " clock_start, paused_working_days, waiting_since, extended_working_days,"
    " expected_completion_date,"
    " missing_documents, settled_amount_cents, reason, channel, channel_chosen_for_claim,"
    " attachments, history, version"
)
_CLAIM_PLACEHOLDERS = ", ".join(f"${i}" for i in range(1, 28))


class PostgresPolicies:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def get(self, policy_id: str) -> Policy | None:
        row = await self._conn.fetchrow(
            f"SELECT {_POLICY_COLUMNS} FROM policies WHERE policy_id = $1", policy_id
        )
        if row is None:
            return None
        return Policy(
            policy_id=row["policy_id"], policy_number=row["policy_number"],
            product_line=ProductLine(row["product_line"]), carrier=Carrier(row["carrier"]),
            policyholder_ids=tuple(row["policyholder_ids"]),
            insured_person_ids=tuple(row["insured_person_ids"]),
            visible_to_insured=row["visible_to_insured"], start_date=row["start_date"],
            cancelled_from=row["cancelled_from"], version=row["version"],
        )  # fmt: skip

    async def save(self, policy: Policy) -> None:
        await self._conn.execute(
            f"INSERT INTO policies ({_POLICY_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
            " ON CONFLICT (policy_id) DO UPDATE SET policy_number = EXCLUDED.policy_number,"
            " product_line = EXCLUDED.product_line, carrier = EXCLUDED.carrier,"
            " policyholder_ids = EXCLUDED.policyholder_ids,"
            " insured_person_ids = EXCLUDED.insured_person_ids,"
            " visible_to_insured = EXCLUDED.visible_to_insured,"
            " start_date = EXCLUDED.start_date, cancelled_from = EXCLUDED.cancelled_from,"
            " version = EXCLUDED.version",
            policy.policy_id, policy.policy_number, policy.product_line.value,
            policy.carrier.value, list(policy.policyholder_ids),
            list(policy.insured_person_ids), policy.visible_to_insured, policy.start_date,
            policy.cancelled_from, policy.version,
        )  # fmt: skip


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _attachment_json(a: Attachment) -> dict[str, Any]:
    return {
        "attachment_id": a.attachment_id, "filename": a.filename,
        "content_type": a.content_type, "size": a.size, "sha256": a.sha256,
        "uploaded_at": a.uploaded_at.isoformat(), "document_type": a.document_type,
    }  # fmt: skip


def _attachment(d: dict[str, Any]) -> Attachment:
    return Attachment(
        attachment_id=d["attachment_id"], filename=d["filename"],
        content_type=d["content_type"], size=d["size"], sha256=d["sha256"],
        uploaded_at=datetime.fromisoformat(d["uploaded_at"]), document_type=d["document_type"],
    )  # fmt: skip


def _history_json(h: HistoryEntry) -> dict[str, Any]:
    return {
        "at": h.at.isoformat(), "old_status": h.old_status.value if h.old_status else None,
        "new_status": h.new_status.value,
        "expected_completion_date": _iso(h.expected_completion_date),
        "previous_expected_completion_date": _iso(h.previous_expected_completion_date),
        "missing_documents": list(h.missing_documents),
        "settled_amount_cents": h.settled_amount_cents, "reason": h.reason,
    }  # fmt: skip


def _history(d: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        at=datetime.fromisoformat(d["at"]),
        old_status=ClaimStatus(d["old_status"]) if d["old_status"] else None,
        new_status=ClaimStatus(d["new_status"]),
        expected_completion_date=_date(d["expected_completion_date"]),
        previous_expected_completion_date=_date(d["previous_expected_completion_date"]),
        missing_documents=tuple(d["missing_documents"]),
        settled_amount_cents=d["settled_amount_cents"], reason=d["reason"],
    )  # fmt: skip


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _claim(row: asyncpg.Record | None) -> Claim | None:
    if row is None:
        return None
    return Claim(
        claim_id=row["claim_id"], claim_number=row["claim_number"],
        customer_id=row["customer_id"], policy_id=row["policy_id"],
        policy_number=row["policy_number"], claim_type=ClaimType(row["claim_type"]),
        product_line=ProductLine(row["product_line"]), carrier=Carrier(row["carrier"]),
        incident_date=row["incident_date"], place=row["place"],
        description=row["description"], reported_at=row["reported_at"],
        not_tracked=NotTracked(row["not_tracked"]) if row["not_tracked"] else None,
        status=ClaimStatus(row["status"]), clock_start=row["clock_start"],
        paused_working_days=row["paused_working_days"], waiting_since=row["waiting_since"],
        extended_working_days=row["extended_working_days"],
        expected_completion_date=row["expected_completion_date"],
        missing_documents=tuple(row["missing_documents"]),
        settled_amount_cents=row["settled_amount_cents"], reason=row["reason"],
        channel=NotificationChannel(row["channel"]),
        channel_chosen_for_claim=row["channel_chosen_for_claim"],
        attachments=[_attachment(a) for a in json.loads(row["attachments"])],
        history=[_history(h) for h in json.loads(row["history"])],
        version=row["version"],
    )  # fmt: skip


def _claim_values(c: Claim) -> list[Any]:
    return [
        c.claim_id, c.claim_number, c.customer_id, c.policy_id, c.policy_number,
        c.claim_type.value, c.product_line.value, c.carrier.value, c.incident_date, c.place,
        c.description, c.reported_at, c.not_tracked.value if c.not_tracked else None,
        c.status.value, c.clock_start, c.paused_working_days, c.waiting_since,
        c.extended_working_days, c.expected_completion_date, list(c.missing_documents),
        c.settled_amount_cents, c.reason, c.channel.value, c.channel_chosen_for_claim,
        json.dumps([_attachment_json(a) for a in c.attachments]),
        json.dumps([_history_json(h) for h in c.history]), c.version,
    ]  # fmt: skip


class PostgresClaims:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def get(self, claim_id: str) -> Claim | None:
        return _claim(await self._conn.fetchrow(
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE claim_id = $1 FOR UPDATE", claim_id
        ))  # fmt: skip

    async def by_number(self, claim_number: str) -> Claim | None:
        return _claim(await self._conn.fetchrow(
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE claim_number = $1 FOR UPDATE",
            claim_number,
        ))  # fmt: skip

    async def of_customer(self, customer_id: str) -> list[Claim]:
        rows = await self._conn.fetch(
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE customer_id = $1"
            " ORDER BY reported_at DESC, claim_number DESC",
            customer_id,
        )
        return [c for c in map(_claim, rows) if c is not None]

    async def due_before(
        self, day: date, statuses: frozenset[ClaimStatus], limit: int
    ) -> list[str]:
        rows = await self._conn.fetch(
            "SELECT claim_id FROM claims WHERE not_tracked IS NULL AND status = ANY($1)"
            " AND expected_completion_date < $2"
            " ORDER BY expected_completion_date, claim_id LIMIT $3",
            sorted(s.value for s in statuses), day, limit,
        )  # fmt: skip
        return [row["claim_id"] for row in rows]

    async def add(self, claim: Claim) -> None:
        try:
            await self._conn.execute(
                f"INSERT INTO claims ({_CLAIM_COLUMNS}) VALUES ({_CLAIM_PLACEHOLDERS})",
                *_claim_values(claim),
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"claim {claim.claim_id} exists") from exc

    async def save(self, claim: Claim) -> None:
        columns = _CLAIM_COLUMNS.replace(" ", "").split(",")
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, 1) if i > 1)
        await self._conn.execute(
            f"UPDATE claims SET {assignments} WHERE claim_id = $1", *_claim_values(claim)
        )

    async def next_number(self) -> int:
        number: int = await self._conn.fetchval("SELECT nextval('claim_numbers')")
        return number

    async def count_by_status(self) -> dict[ClaimStatus, int]:
        rows = await self._conn.fetch("SELECT status, count(*) AS n FROM claims GROUP BY status")
        return {ClaimStatus(row["status"]): int(row["n"]) for row in rows}


class PostgresSubmissions:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def get(self, customer_id: str, key: str) -> IdempotencyRecord | None:
        row = await self._conn.fetchrow(
            "SELECT fingerprint, claim_id FROM submissions"
            " WHERE customer_id = $1 AND idempotency_key = $2",
            customer_id, key,
        )  # fmt: skip
        if row is None:
            return None
        return IdempotencyRecord(customer_id, key, row["fingerprint"], row["claim_id"])

    async def add(self, record: IdempotencyRecord) -> None:
        # A concurrent submission with the same key took it: run again and find it.
        try:
            await self._conn.execute(
                "INSERT INTO submissions (customer_id, idempotency_key, fingerprint, claim_id)"
                " VALUES ($1, $2, $3, $4)",
                record.customer_id, record.key, record.fingerprint, record.claim_id,
            )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("idempotency key taken meanwhile") from exc


class PostgresHandledMessages:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def get(self, source_system: str, message_id: str) -> HandledMessage | None:
        claim_id = await self._conn.fetchval(
            "SELECT claim_id FROM handled_messages WHERE source_system = $1 AND message_id = $2",
            source_system, message_id,
        )  # fmt: skip
        return None if claim_id is None else HandledMessage(source_system, message_id, claim_id)

    async def add(self, message: HandledMessage) -> None:
        try:
            await self._conn.execute(
                "INSERT INTO handled_messages (source_system, message_id, claim_id)"
                " VALUES ($1, $2, $3)",
                message.source_system, message.message_id, message.claim_id,
            )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("message handled meanwhile") from exc


class PostgresPreferences:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def default_channel(self, customer_id: str) -> NotificationChannel | None:
        value = await self._conn.fetchval(
            "SELECT default_channel FROM preferences WHERE customer_id = $1", customer_id
        )
        return NotificationChannel(value) if value else None

    async def set_default_channel(self, customer_id: str, channel: NotificationChannel) -> None:
        await self._conn.execute(
            "INSERT INTO preferences (customer_id, default_channel) VALUES ($1, $2)"
            " ON CONFLICT (customer_id) DO UPDATE SET default_channel = EXCLUDED.default_channel",
            customer_id, channel.value,
        )  # fmt: skip


class PostgresClaimsUnitOfWork(PostgresUnitOfWork):
    def __init__(self, conn: Connection, store: EventStore) -> None:
        super().__init__(conn, store)
        self.policies = PostgresPolicies(conn)
        self.claims = PostgresClaims(conn)
        self.submissions = PostgresSubmissions(conn)
        self.handled = PostgresHandledMessages(conn)
        self.preferences = PostgresPreferences(conn)
        self.blobs = PostgresBlobStore(conn)
