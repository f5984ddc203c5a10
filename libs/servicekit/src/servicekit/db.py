"""PostgreSQL pools and the SQL migrations runner.

Each service owns one schema (its own database in production); every connection of its
pool has `search_path` set to it, so service SQL never names the schema.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from servicekit.logging import get_logger

Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
"""A connection, whether taken from a pool or opened on its own."""

# What a database away looks like: connections refused, closed or reset, or ended by the
# server while asyncpg had not noticed yet (InternalClientError: its protocol caught
# mid-way by the server's goodbye - "cannot switch to state ...; another operation is in
# progress").
DATABASE_TROUBLE: tuple[type[BaseException], ...] = (
    OSError,  # refused / reset / timed out (TimeoutError is one)
    asyncpg.PostgresError,  # e.g. AdminShutdown, CannotConnectNowError of a restart
    asyncpg.InterfaceError,  # e.g. ConnectionDoesNotExistError
    asyncpg.InternalClientError,
)

log = get_logger(__name__)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_LOCK = 0x5EC0_0001


def _checked(schema: str) -> str:
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"not a valid schema name: {schema!r}")
    return schema


async def create_pool(dsn: str, schema: str, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        server_settings={"search_path": _checked(schema), "application_name": schema},
    )
    assert pool is not None
    return pool


def common_migrations() -> list[tuple[str, str]]:
    folder = resources.files("servicekit") / "sql"
    return sorted(
        (entry.name, entry.read_text()) for entry in folder.iterdir() if entry.name.endswith(".sql")
    )


def migrations_in(folder: Path) -> list[tuple[str, str]]:
    return sorted((p.name, p.read_text()) for p in folder.glob("*.sql"))


async def migrate(dsn: str, schema: str, service_migrations: Sequence[tuple[str, str]]) -> int:
    """Apply the common and then the service's migrations once each; returns how many ran.

    An advisory lock serialises concurrent starts of several instances.
    """
    schema = _checked(schema)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"SET search_path TO {schema}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        ran = 0
        plan = [(f"common/{n}", sql) for n, sql in common_migrations()]
        plan += [(f"service/{n}", sql) for n, sql in service_migrations]
        for name, sql in plan:
            if name in applied:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            log.info("migration_applied", schema=schema, migration=name)
            ran += 1
        return ran
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()


async def drop_schema(dsn: str, schema: str) -> None:
    """For tests and projection rebuilds only."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {_checked(schema)} CASCADE")
    finally:
        await conn.close()
