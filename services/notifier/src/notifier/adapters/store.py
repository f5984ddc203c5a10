"""PostgreSQL adapters: the contact view (NT-3), the message store (NT-4), the delivery log.

The state machine lives in `domain/delivery.py`; this module only reads and writes its
states. Every write of a transition appends to `delivery_log` in the same statement or
transaction, so the log never disagrees with the row.

Concurrency (several instances):
- contacts: the consumer locks the rows of the customers whose view it folds (a
  placeholder row is inserted first so that there is a row to lock), in customer order;
- deliveries: a worker claims rows with `FOR UPDATE SKIP LOCKED` (two workers never claim
  the same row) and marks them SENDING with a lease in the same transaction; rate-limit
  buckets are serialised with transaction-scoped advisory locks;
- results are written fenced on (status = sending, attempts, replays): a worker whose lease
  ran out and whose delivery was taken over cannot overwrite the newer attempt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
from servicekit.db import Connection

from notifier.domain.contacts import ContactView
from notifier.domain.delivery import Delivery, DeliveryStatus
from notifier.domain.dispatch import Claimed, Step
from notifier.domain.messages import (
    ChannelKind,
    MessageKind,
    OutgoingMessage,
    RenderedMessage,
    masked_recipient,
)

#: Code messages are scrubbed of their code once they reach one of these (NT-5 hygiene).
SCRUB_WHEN = frozenset({DeliveryStatus.SENT, DeliveryStatus.EXPIRED, DeliveryStatus.SUPPRESSED})


def needs_scrub(message: OutgoingMessage, status: DeliveryStatus) -> bool:
    return message.is_code and status in SCRUB_WHEN


# ------------------------------------------------------------------------- contacts


async def lock_views(
    conn: Connection, customer_ids: Iterable[str], now: datetime
) -> dict[str, ContactView | None]:
    """The views of `customer_ids`, locked for update until the transaction ends."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    await conn.execute(
        "INSERT INTO contacts (customer_id, updated_at) SELECT unnest($1::text[]), $2"
        " ORDER BY 1 ON CONFLICT (customer_id) DO NOTHING",
        ids,
        now,
    )
    rows = await conn.fetch(
        "SELECT customer_id, view FROM contacts WHERE customer_id = ANY($1::text[])"
        " ORDER BY customer_id FOR UPDATE",
        ids,
    )
    return {row["customer_id"]: _view(row["view"]) for row in rows}


async def read_views(conn: Connection, customer_ids: Iterable[str]) -> dict[str, ContactView]:
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT customer_id, view FROM contacts"
        " WHERE customer_id = ANY($1::text[]) AND view IS NOT NULL",
        ids,
    )
    return {row["customer_id"]: view for row in rows if (view := _view(row["view"]))}


async def save_views(conn: Connection, views: Sequence[ContactView], now: datetime) -> None:
    if not views:
        return
    await conn.execute(
        "INSERT INTO contacts (customer_id, view, identity_version, updated_at)"
        " SELECT c, v, iv, $4 FROM unnest($1::text[], $2::jsonb[], $3::int[]) AS u(c, v, iv)"
        " ON CONFLICT (customer_id) DO UPDATE SET view = excluded.view,"
        " identity_version = excluded.identity_version, updated_at = excluded.updated_at",
        [v.customer_id for v in views],
        [v.model_dump_json() for v in views],
        [v.identity_version for v in views],
        now,
    )


async def view_of(conn: Connection, customer_id: str) -> ContactView | None:
    raw = await conn.fetchval("SELECT view FROM contacts WHERE customer_id = $1", customer_id)
    return _view(raw)


def _view(raw: str | None) -> ContactView | None:
    return None if raw is None else ContactView.model_validate_json(raw)


# ----------------------------------------------------------------------- deliveries


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A planned message with its text (or the reason it has none), ready to insert."""

    message: OutgoingMessage
    delivery: Delivery
    rate_bucket: str
    rendered: RenderedMessage | None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A delivery as operators see it: state and metadata, never the content."""

    delivery: Delivery
    customer_id: str
    kind: MessageKind
    channel: ChannelKind
    recipient: str  # masked
    event_id: UUID
    event_type: str
    attempted_at: datetime | None
    created_at: datetime
    has_text: bool


@dataclass(frozen=True, slots=True)
class LogEntry:
    status: str
    at: datetime
    attempt: int
    detail: str | None


_INSERT_DELIVERIES = """
WITH inserted AS (
    INSERT INTO deliveries (message_key, customer_id, kind, channel, event_id, event_type,
                            status, next_attempt_at, not_after, rate_bucket, message, rendered,
                            last_error, created_at, updated_at)
    SELECT k, c, kd, ch, e, et, s, n, na, b, m, r, le, $14, $14
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[],
                $7::text[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::jsonb[],
                $12::jsonb[], $13::text[]) AS u(k, c, kd, ch, e, et, s, n, na, b, m, r, le)
    ON CONFLICT (message_key) DO NOTHING
    RETURNING message_key, status, last_error, created_at
)
INSERT INTO delivery_log (message_key, status, at, detail)
SELECT message_key, status, created_at, last_error FROM inserted
RETURNING message_key, status
"""


async def insert_deliveries(
    conn: Connection, new: Sequence[NewDelivery], now: datetime
) -> list[tuple[str, DeliveryStatus]]:
    """Insert what is not there yet (NT-4); returns the keys that were new."""
    if not new:
        return []
    rows = await conn.fetch(
        _INSERT_DELIVERIES,
        [n.message.message_key for n in new],
        [n.message.customer_id for n in new],
        [n.message.kind.value for n in new],
        [n.message.channel.value for n in new],
        [n.message.event_id for n in new],
        [n.message.event_type for n in new],
        [n.delivery.status.value for n in new],
        [n.delivery.next_attempt_at for n in new],
        [n.delivery.not_after for n in new],
        [n.rate_bucket for n in new],
        [n.message.model_dump_json() for n in new],
        [n.rendered.model_dump_json() if n.rendered else None for n in new],
        [n.delivery.last_error for n in new],
        now,
    )
    return [(row["message_key"], DeliveryStatus(row["status"])) for row in rows]


_DELIVERY_COLUMNS = (
    "message_key, status, updated_at, not_after, attempts, next_attempt_at, lease_until,"
    " last_error, provider_ref, replays"
)


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(
        message_key=row["message_key"],
        status=DeliveryStatus(row["status"]),
        updated_at=row["updated_at"],
        not_after=row["not_after"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        lease_until=row["lease_until"],
        last_error=row["last_error"],
        provider_ref=row["provider_ref"],
        replays=row["replays"],
    )


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    claimed: Claimed
    rendered: RenderedMessage | None


async def claimable(conn: Connection, now: datetime, limit: int) -> list[ClaimedRow]:
    """Due or expired waiting deliveries, and SENDING ones whose lease ran out, locked
    (`FOR UPDATE SKIP LOCKED`: other workers skip them). Call inside a transaction."""
    rows = await conn.fetch(
        f"SELECT {_DELIVERY_COLUMNS}, message, rendered FROM deliveries"  # noqa: S608 - constant columns
        " WHERE (status IN ('queued', 'failed') AND (next_attempt_at <= $1 OR not_after <= $1))"
        "    OR (status = 'sending' AND lease_until <= $1)"
        " ORDER BY coalesce(next_attempt_at, lease_until), message_key"
        " LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [
        ClaimedRow(
            Claimed(_delivery(row), OutgoingMessage.model_validate_json(row["message"])),
            RenderedMessage.model_validate_json(row["rendered"]) if row["rendered"] else None,
        )
        for row in rows
    ]


async def lock_buckets(conn: Connection, buckets: Iterable[str]) -> None:
    """Serialise rate-limit decisions per bucket (NT-6) until the transaction ends."""
    ordered = sorted(set(buckets))
    if ordered:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(h) FROM"
            " (SELECT hashtextextended(b, 7) AS h FROM unnest($1::text[]) AS b ORDER BY 1) AS s",
            ordered,
        )


async def send_times(
    conn: Connection, buckets: Iterable[str], since: datetime
) -> dict[str, list[datetime]]:
    """NT-6: when each bucket's messages were sent (or are being sent) since `since`."""
    rows = await conn.fetch(
        "SELECT rate_bucket, attempted_at FROM deliveries"
        " WHERE rate_bucket = ANY($1::text[]) AND status IN ('sent', 'sending')"
        " AND attempted_at > $2",
        sorted(set(buckets)),
        since,
    )
    times: dict[str, list[datetime]] = defaultdict(list)
    for row in rows:
        times[row["rate_bucket"]].append(row["attempted_at"])
    return dict(times)


_APPLY_STEPS = """
UPDATE deliveries AS d SET
    status = u.status, attempts = u.attempts, next_attempt_at = u.next_attempt_at,
    lease_until = u.lease_until, attempted_at = coalesce(u.attempted_at, d.attempted_at),
    last_error = u.last_error, updated_at = u.updated_at,
    rendered = CASE WHEN u.scrub THEN NULL ELSE d.rendered END,
    message = CASE WHEN u.scrub THEN jsonb_set(d.message, '{context}', '{}') ELSE d.message END
FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[],
            $6::timestamptz[], $7::text[], $8::timestamptz[], $9::bool[])
     AS u(message_key, status, attempts, next_attempt_at, lease_until, attempted_at,
          last_error, updated_at, scrub)
WHERE d.message_key = u.message_key
"""


async def apply_steps(conn: Connection, steps: Sequence[Step], now: datetime) -> None:
    """Write the decided transitions of claimed rows and log them (same transaction)."""
    if not steps:
        return
    afters = [s.after for s in steps]
    await conn.execute(
        _APPLY_STEPS,
        [d.message_key for d in afters],
        [d.status.value for d in afters],
        [d.attempts for d in afters],
        [d.next_attempt_at for d in afters],
        [d.lease_until for d in afters],
        [now if s.send else None for s in steps],
        [d.last_error for d in afters],
        [d.updated_at for d in afters],
        [needs_scrub(s.message, s.after.status) for s in steps],
    )
    await append_log(
        conn,
        [(s.after.message_key, s.log, now, s.after.attempts, s.detail) for s in steps],
    )


async def append_log(
    conn: Connection, entries: Sequence[tuple[str, str, datetime, int, str | None]]
) -> None:
    await conn.execute(
        "INSERT INTO delivery_log (message_key, status, at, attempt, detail)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[], $5::text[])",
        [e[0] for e in entries],
        [e[1] for e in entries],
        [e[2] for e in entries],
        [e[3] for e in entries],
        [e[4] for e in entries],
    )


_RECORD_RESULT = """
WITH updated AS (
    UPDATE deliveries SET
        status = $4, next_attempt_at = $5, lease_until = NULL, last_error = $6,
        provider_ref = coalesce($7, provider_ref), updated_at = $8,
        rendered = CASE WHEN $9 THEN NULL ELSE rendered END,
        message = CASE WHEN $9 THEN jsonb_set(message, '{context}', '{}') ELSE message END
    WHERE message_key = $1 AND status = 'sending' AND attempts = $2 AND replays = $3
    RETURNING message_key, attempts
)
INSERT INTO delivery_log (message_key, status, at, attempt, detail)
SELECT message_key, $4, $8, attempts, $10 FROM updated
RETURNING id
"""


async def record_result(
    conn: Connection,
    before: Delivery,
    after: Delivery,
    message: OutgoingMessage,
    detail: str | None,
) -> bool:
    """Write the outcome of an attempt, fenced on the attempt; False if it was taken over.

    One statement: the row and its log entry commit together, right after the provider
    answered (this is what keeps the crash window as small as it can be).
    """
    written = await conn.fetchval(
        _RECORD_RESULT,
        before.message_key,
        before.attempts,
        before.replays,
        after.status.value,
        after.next_attempt_at,
        after.last_error,
        after.provider_ref,
        after.updated_at,
        needs_scrub(message, after.status),
        detail,
    )
    return written is not None


class NotReplayable(Exception):
    """The delivery is not dead, or has no text to send (the NT-5 guard refused it)."""


async def replay(
    conn: Connection,
    message_key: str,
    transition: Callable[[Delivery], Delivery],
    now: datetime,
    detail: str,
) -> Delivery | None:
    """Apply `transition(delivery) -> Delivery` (the domain's replay) under a row lock.

    Returns None for an unknown key; raises `NotReplayable`.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_DELIVERY_COLUMNS}, rendered IS NOT NULL AS has_text FROM deliveries"  # noqa: S608 - constant columns
            " WHERE message_key = $1 FOR UPDATE",
            message_key,
        )
        if row is None:
            return None
        if not row["has_text"]:
            raise NotReplayable("the message has no text to send (refused by the NT-5 guard)")
        after = transition(_delivery(row))
        await conn.execute(
            "UPDATE deliveries SET status = $2, attempts = $3, next_attempt_at = $4,"
            " replays = $5, lease_until = NULL, updated_at = $6 WHERE message_key = $1",
            message_key,
            after.status.value,
            after.attempts,
            after.next_attempt_at,
            after.replays,
            after.updated_at,
        )
        await append_log(conn, [(message_key, after.status.value, now, 0, detail)])
        return after


# ---------------------------------------------------------------------- operator views

_RECORD_COLUMNS = (
    f"{_DELIVERY_COLUMNS}, customer_id, kind, channel, event_id, event_type, attempted_at,"
    " created_at, rendered IS NOT NULL AS has_text, message->>'recipient' AS recipient"
)


def _record(row: asyncpg.Record) -> DeliveryRecord:
    channel = ChannelKind(row["channel"])
    return DeliveryRecord(
        delivery=_delivery(row),
        customer_id=row["customer_id"],
        kind=MessageKind(row["kind"]),
        channel=channel,
        recipient=masked_recipient(channel, row["recipient"] or ""),
        event_id=row["event_id"],
        event_type=row["event_type"],
        attempted_at=row["attempted_at"],
        created_at=row["created_at"],
        has_text=row["has_text"],
    )


async def find_deliveries(
    conn: Connection,
    *,
    status: DeliveryStatus | None = None,
    customer_id: str | None = None,
    event_id: UUID | None = None,
    limit: int = 100,
) -> list[DeliveryRecord]:
    rows = await conn.fetch(
        f"SELECT {_RECORD_COLUMNS} FROM deliveries"  # noqa: S608 - constant columns
        " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR customer_id = $2)"
        " AND ($3::uuid IS NULL OR event_id = $3)"
        " ORDER BY created_at DESC, message_key LIMIT $4",
        status.value if status else None,
        customer_id,
        event_id,
        limit,
    )
    return [_record(row) for row in rows]


async def get_delivery(conn: Connection, message_key: str) -> DeliveryRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE message_key = $1",  # noqa: S608
        message_key,
    )
    return None if row is None else _record(row)


async def log_of(conn: Connection, message_key: str) -> list[LogEntry]:
    rows = await conn.fetch(
        "SELECT status, at, attempt, detail FROM delivery_log WHERE message_key = $1 ORDER BY id",
        message_key,
    )
    return [LogEntry(r["status"], r["at"], r["attempt"], r["detail"]) for r in rows]


async def counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Deliveries per channel and status (OPS-1: notifications sent/failed, dead letters)."""
    rows = await conn.fetch(
        "SELECT channel, status, count(*) AS n FROM deliveries GROUP BY channel, status"
    )
    result: dict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        result[row["channel"]][row["status"]] = row["n"]
    return dict(result)
