"""PostgreSQL: the operators' read side (OPS-1): deliveries, their log, counts.

Nothing here selects message content: state, times, the provider reference, the error
classification and a masked recipient.
"""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

import asyncpg
from servicekit.db import Connection

from notifier.adapters.deliveries import DELIVERY_COLUMNS, delivery_of
from notifier.domain.delivery import DeliveryStatus
from notifier.domain.messages import ChannelKind, MessageKind, masked_recipient
from notifier.unit_of_work import DeliveryRecord

_RECORD_COLUMNS = (
    f"{DELIVERY_COLUMNS}, customer_id, kind, channel, event_id, event_type, attempted_at,"
    " created_at, rendered IS NOT NULL AS has_text, message->>'recipient' AS recipient"
)


class PostgresDeliveryReports:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def find(
        self,
        *,
        status: DeliveryStatus | None = None,
        customer_id: str | None = None,
        event_id: UUID | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        rows = await self._conn.fetch(
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

    async def get(self, message_key: str) -> DeliveryRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE message_key = $1",  # noqa: S608
            message_key,
        )
        return None if row is None else _record(row)

    async def counts(self) -> dict[str, dict[str, int]]:
        rows = await self._conn.fetch(
            "SELECT channel, status, count(*) AS n FROM deliveries GROUP BY channel, status"
        )
        result: dict[str, dict[str, int]] = defaultdict(dict)
        for row in rows:
            result[row["channel"]][row["status"]] = row["n"]
        return dict(result)


def _record(row: asyncpg.Record) -> DeliveryRecord:
    channel = ChannelKind(row["channel"])
    return DeliveryRecord(
        delivery=delivery_of(row),
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
