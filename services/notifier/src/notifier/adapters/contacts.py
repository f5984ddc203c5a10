"""PostgreSQL: the contact view (NT-3), one row per customer in `contacts`.

The consumer locks the rows of the customers whose view it folds (a placeholder row is
inserted first so that there is a row to lock), in customer order: two instances folding
one customer's events from different topics serialise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from servicekit.db import Connection

from notifier.domain.contacts import ContactView


class PostgresContacts:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def lock(
        self, customer_ids: Iterable[str], now: datetime
    ) -> dict[str, ContactView | None]:
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        await self._conn.execute(
            "INSERT INTO contacts (customer_id, updated_at) SELECT unnest($1::text[]), $2"
            " ORDER BY 1 ON CONFLICT (customer_id) DO NOTHING",
            ids,
            now,
        )
        rows = await self._conn.fetch(
            "SELECT customer_id, view FROM contacts WHERE customer_id = ANY($1::text[])"
            " ORDER BY customer_id FOR UPDATE",
            ids,
        )
        return {row["customer_id"]: _view(row["view"]) for row in rows}

    async def read(self, customer_ids: Iterable[str]) -> dict[str, ContactView]:
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        rows = await self._conn.fetch(
            "SELECT customer_id, view FROM contacts"
            " WHERE customer_id = ANY($1::text[]) AND view IS NOT NULL",
            ids,
        )
        return {row["customer_id"]: view for row in rows if (view := _view(row["view"]))}

    async def save(self, views: Sequence[ContactView], now: datetime) -> None:
        if not views:
            return
        await self._conn.execute(
            "INSERT INTO contacts (customer_id, view, identity_version, updated_at)"
            " SELECT c, v, iv, $4 FROM unnest($1::text[], $2::jsonb[], $3::int[]) AS u(c, v, iv)"
            " ON CONFLICT (customer_id) DO UPDATE SET view = excluded.view,"
            " identity_version = excluded.identity_version, updated_at = excluded.updated_at",
            [v.customer_id for v in views],
            [v.model_dump_json() for v in views],
            [v.identity_version for v in views],
            now,
        )


def _view(raw: str | None) -> ContactView | None:
    return None if raw is None else ContactView.model_validate_json(raw)
