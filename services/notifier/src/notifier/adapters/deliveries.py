"""PostgreSQL: the message store (NT-4), the delivery log (OPS-1) and the rate-limit
buckets (NT-6).

The state machine lives in `domain/delivery.py`; this module only reads and writes its
states. Every write of a transition appends to `delivery_log` in the same statement or
transaction, so the log never disagrees with the row.

Concurrency (several instances):
- a worker claims rows with `FOR UPDATE SKIP LOCKED` (two workers never claim the same
  row) and marks them SENDING with a lease in the same transaction;
- rate-limit buckets are serialised with transaction-scoped advisory locks, taken in a
  fixed order (no deadlock between claims) by the statement that claims the rows;
- results are written a round at a time, each fenced on (status = sending, attempts,
  replays): a worker whose lease ran out and whose delivery was taken over cannot
  overwrite the newer attempt;
- a transaction that queues deliveries also NOTIFYs the schema's channel (delivered at its
  commit, to every instance): `DueNotifications` wakes the workers at once instead of at
  their next poll. A hint only - the workers still poll, so a lost notification (listener
  reconnecting, database restart) delays a delivery by one poll interval, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from servicekit.db import Connection
from servicekit.logging import get_logger

from notifier.domain.delivery import Delivery, DeliveryStatus, needs_scrub
from notifier.domain.dispatch import Claimed, Step
from notifier.domain.messages import OutgoingMessage, RenderedMessage
from notifier.unit_of_work import (
    AttemptId,
    AttemptResult,
    ClaimedRow,
    LogEntry,
    NewDelivery,
    Replayable,
)

log = get_logger(__name__)

#: The NOTIFY channel of this schema's due deliveries: fixed length whatever the schema's
#: name (a channel name has at most 63 bytes), distinct per schema on a shared database.
_DUE_CHANNEL = "'notifier_due_' || md5(current_schema())"
_NOTIFY_DUE = f"SELECT pg_notify({_DUE_CHANNEL}, '')"

DELIVERY_COLUMNS = (
    "message_key, status, updated_at, not_after, attempts, next_attempt_at, lease_until,"
    " last_error, provider_ref, replays"
)


def delivery_of(row: asyncpg.Record) -> Delivery:
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


class PostgresDeliveryLog:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def append(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        await self._conn.execute(
            "INSERT INTO delivery_log (message_key, status, at, attempt, detail) SELECT *"
            " FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[], $5::text[])",
            [e.message_key for e in entries],
            [e.status for e in entries],
            [e.at for e in entries],
            [e.attempt for e in entries],
            [e.detail for e in entries],
        )

    async def of(self, message_key: str) -> list[LogEntry]:
        rows = await self._conn.fetch(
            "SELECT status, at, attempt, detail FROM delivery_log WHERE message_key = $1"
            " ORDER BY id",
            message_key,
        )
        return [
            LogEntry(message_key, r["status"], r["at"], r["attempt"], r["detail"]) for r in rows
        ]


# The rows that are new, their `queued` (or `dead`) log entry, and - when one is queued -
# the NOTIFY that wakes the workers at commit: one statement.
_INSERT_DELIVERIES = f"""
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
), logged AS (
    INSERT INTO delivery_log (message_key, status, at, detail)
    SELECT message_key, status, created_at, last_error FROM inserted
    RETURNING message_key, status
), notified AS (
    SELECT count(pg_notify({_DUE_CHANNEL}, ''))
    FROM (SELECT 1 FROM inserted WHERE status = 'queued' LIMIT 1) AS queued
)
SELECT message_key, status FROM logged, notified
"""  # noqa: S608 - constant text only

_DUE = """
FROM deliveries
WHERE (status IN ('queued', 'failed') AND (next_attempt_at <= $1 OR not_after <= $1))
   OR (status = 'sending' AND lease_until <= $1)
ORDER BY coalesce(next_attempt_at, lease_until), message_key
LIMIT $2 FOR UPDATE SKIP LOCKED
"""
_CLAIM_DUE = f"SELECT {DELIVERY_COLUMNS}, message, rendered {_DUE}"
# `_CLAIM_DUE` that also takes the rate-limit locks of the buckets of the waiting rows it
# claimed (transaction-scoped advisory locks, in key order) - no round trip of their own.
# `send_times` is read by the next statement: under READ COMMITTED it sees every send that
# a claim holding one of these locks before committed.
_CLAIM_DUE_LOCKING = f"""
WITH claimed AS (SELECT {DELIVERY_COLUMNS}, message, rendered, rate_bucket {_DUE}), locked AS (
    SELECT count(pg_advisory_xact_lock(h)) FROM (
        SELECT hashtextextended(b, 7) AS h
        FROM (SELECT DISTINCT rate_bucket AS b FROM claimed WHERE status <> 'sending') AS d
        ORDER BY 1
    ) AS s
)
SELECT {DELIVERY_COLUMNS}, message, rendered FROM claimed, locked
ORDER BY coalesce(next_attempt_at, lease_until), message_key
"""  # noqa: S608 - constant text only

# The decided transitions of claimed rows and their log entries ($10: what the log says,
# $11: when, $12: the detail), one statement.
_APPLY_STEPS = """
WITH updated AS (
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
)
INSERT INTO delivery_log (message_key, status, at, attempt, detail)
SELECT k, l, $11, a, dt
FROM unnest($1::text[], $10::text[], $3::int[], $12::text[]) AS u(k, l, a, dt)
"""

_RECORD_RESULTS = """
WITH updated AS (
    UPDATE deliveries AS d SET
        status = u.status, next_attempt_at = u.next_attempt_at, lease_until = NULL,
        last_error = u.last_error, provider_ref = coalesce(u.provider_ref, d.provider_ref),
        updated_at = u.updated_at,
        rendered = CASE WHEN u.scrub THEN NULL ELSE d.rendered END,
        message = CASE WHEN u.scrub THEN jsonb_set(d.message, '{context}', '{}') ELSE d.message END
    FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::timestamptz[], $6::text[],
                $7::text[], $8::timestamptz[], $9::bool[], $10::text[])
         AS u(message_key, attempts, replays, status, next_attempt_at, last_error,
              provider_ref, updated_at, scrub, detail)
    WHERE d.message_key = u.message_key
      AND d.status = 'sending' AND d.attempts = u.attempts AND d.replays = u.replays
    RETURNING d.message_key, d.attempts, d.replays, u.status, u.updated_at, u.detail
), logged AS (
    INSERT INTO delivery_log (message_key, status, at, attempt, detail)
    SELECT message_key, status, updated_at, attempts, detail FROM updated ORDER BY message_key
)
SELECT message_key, attempts AS attempt, replays FROM updated
"""


class PostgresDeliveries:
    def __init__(self, conn: Connection, log: PostgresDeliveryLog) -> None:
        self._conn = conn
        self._log = log

    async def add(
        self, new: Sequence[NewDelivery], now: datetime
    ) -> list[tuple[str, DeliveryStatus]]:
        """One statement: the rows that are new, their `queued` (or `dead`) log entry, and
        the workers' wake-up when one is queued."""
        if not new:
            return []
        rows = await self._conn.fetch(
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

    async def claim_due(
        self, now: datetime, limit: int, *, lock_buckets: bool = False
    ) -> list[ClaimedRow]:
        """`FOR UPDATE SKIP LOCKED`: rows another claim holds are skipped, not waited for.
        With `lock_buckets`, the same statement takes the rate-limit locks of the buckets
        of the waiting rows it claimed."""
        rows = await self._conn.fetch(
            _CLAIM_DUE_LOCKING if lock_buckets else _CLAIM_DUE, now, limit
        )
        return [
            ClaimedRow(
                Claimed(delivery_of(row), OutgoingMessage.model_validate_json(row["message"])),
                RenderedMessage.model_validate_json(row["rendered"]) if row["rendered"] else None,
            )
            for row in rows
        ]

    async def apply_steps(self, steps: Sequence[Step], now: datetime) -> None:
        """One statement: the transitions and their log entries."""
        if not steps:
            return
        afters = [s.after for s in steps]
        await self._conn.execute(
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
            [s.log for s in steps],
            now,
            [s.detail for s in steps],
        )

    async def record_results(self, results: Sequence[AttemptResult]) -> set[AttemptId]:
        """One statement for a round of outcomes: the rows and their log entries, right
        after the providers answered (this is what keeps the crash window small)."""
        if not results:
            return set()
        ordered = sorted(results, key=lambda r: r.before.message_key)  # one lock order
        rows = await self._conn.fetch(
            _RECORD_RESULTS,
            [r.before.message_key for r in ordered],
            [r.before.attempts for r in ordered],
            [r.before.replays for r in ordered],
            [r.after.status.value for r in ordered],
            [r.after.next_attempt_at for r in ordered],
            [r.after.last_error for r in ordered],
            [r.after.provider_ref for r in ordered],
            [r.after.updated_at for r in ordered],
            [needs_scrub(r.message, r.after.status) for r in ordered],
            [r.detail for r in ordered],
        )
        return {(row["message_key"], row["attempt"], row["replays"]) for row in rows}

    async def for_replay(self, message_key: str) -> Replayable | None:
        row = await self._conn.fetchrow(
            f"SELECT {DELIVERY_COLUMNS}, rendered IS NOT NULL AS has_text FROM deliveries"  # noqa: S608 - constant columns
            " WHERE message_key = $1 FOR UPDATE",
            message_key,
        )
        return None if row is None else Replayable(delivery_of(row), row["has_text"])

    async def requeue(self, after: Delivery, detail: str, now: datetime) -> None:
        await self._conn.execute(
            "UPDATE deliveries SET status = $2, attempts = $3, next_attempt_at = $4,"
            " replays = $5, lease_until = NULL, updated_at = $6 WHERE message_key = $1",
            after.message_key,
            after.status.value,
            after.attempts,
            after.next_attempt_at,
            after.replays,
            after.updated_at,
        )
        await self._log.append([LogEntry(after.message_key, after.status.value, now, 0, detail)])
        await self._conn.execute(_NOTIFY_DUE)


class PostgresRateBuckets:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def send_times(
        self, buckets: Iterable[str], since: datetime
    ) -> dict[str, list[datetime]]:
        rows = await self._conn.fetch(
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


class DueNotifications:
    """The worker's wake-up: set when a transaction that queued deliveries in this schema
    committed (any instance). It holds one pooled connection LISTENing; when that
    connection is lost, `listening()` takes a new one at the next call (and reports the
    deliveries as possibly due: notifications may have been missed meanwhile)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: Any = None
        self._channel = ""
        self.due = asyncio.Event()

    async def listening(self) -> bool:
        """Listen if not already; False while the database cannot be reached."""
        if self._conn is not None and _open(self._conn):
            return True
        await self.close()
        try:
            conn = await self._pool.acquire()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as trouble:
            log.warning("due_listener_unavailable", error=repr(trouble))
            return False
        try:
            self._channel = await conn.fetchval(f"SELECT {_DUE_CHANNEL}")
            await conn.add_listener(self._channel, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as trouble:
            log.warning("due_listener_unavailable", error=repr(trouble))
            with contextlib.suppress(Exception):
                await self._pool.release(conn)
            return False
        self._conn = conn
        self.due.set()
        return True

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(self._channel, self._notified)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    def _notified(self, *_: object) -> None:
        self.due.set()


def _open(conn: Any) -> bool:
    """Whether the pooled connection still runs. When its connection is lost (a PostgreSQL
    restart), asyncpg gives it back to the pool at once and detaches the proxy we hold:
    every call on it - `is_closed()` too - then raises InterfaceError ("connection has been
    released back to the pool"), which ended the worker in issue 13's chaos runs."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False
