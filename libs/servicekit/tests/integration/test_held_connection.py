"""A stream subscriber's transactions on one kept connection (`servicekit.postgres.held`):
no pool acquire and reset per batch, yet a lost connection is replaced before the next
batch, and a kept connection never keeps the pool from closing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from servicekit.db import Connection, create_pool
from servicekit.eventstore import EventStore
from servicekit.postgres import (
    HeldConnection,
    PostgresUnitOfWork,
    held,
    postgres_transactions,
    release_held,
)
from servicekit.testing import until
from servicekit.unit_of_work import Transactions

pytestmark = pytest.mark.integration

#: A guard against a hang only: each wait ends as soon as its condition holds.
HANG_GUARD_SECONDS = 60.0


def unit_of_work(conn: Connection) -> PostgresUnitOfWork:
    return PostgresUnitOfWork(conn, EventStore("/test"))


async def backend(transactions: Transactions[PostgresUnitOfWork]) -> int:
    async def pid(uow: PostgresUnitOfWork) -> int:
        return int(await uow.conn.fetchval("SELECT pg_backend_pid()"))

    return await transactions.run(pid)


async def terminate(dsn: str, pid: int) -> None:
    """End the backend `pid` as a restart does (AdminShutdown), and return once it is gone."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
        await until(lambda: gone(conn, pid), within=HANG_GUARD_SECONDS, every=0.02)
    finally:
        await conn.close()


async def gone(conn: asyncpg.Connection, pid: int) -> bool:
    return not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)


async def test_a_subscribers_transactions_run_on_one_kept_connection(pool: asyncpg.Pool) -> None:
    transactions = held(postgres_transactions(pool, unit_of_work))
    try:
        assert len({await backend(transactions) for _ in range(5)}) == 1
    finally:
        await release_held(transactions)


async def test_a_connection_lost_between_batches_is_replaced_before_the_next_one(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """What a PostgreSQL restart does to the kept connection: asyncpg releases it and
    detaches its proxy (where even `is_closed()` raises); the next transaction must not
    fail on it but run on a fresh connection."""
    transactions = held(postgres_transactions(pool, unit_of_work))
    try:
        lost = await backend(transactions)
        await terminate(dsn, lost)
        assert await backend(transactions) != lost
    finally:
        await release_held(transactions)


async def test_a_failed_transaction_gives_its_connection_back_and_the_next_one_runs(
    pool: asyncpg.Pool,
) -> None:
    transactions = held(postgres_transactions(pool, unit_of_work))

    async def broken(uow: PostgresUnitOfWork) -> None:
        await uow.conn.execute("SELECT 1")
        raise RuntimeError("the handler failed")

    try:
        await backend(transactions)
        with pytest.raises(RuntimeError):
            await transactions.run(broken)
        assert await backend(transactions) > 0
    finally:
        await release_held(transactions)


async def test_an_idle_kept_connection_goes_back_so_the_pool_closes(dsn: str, schema: str) -> None:
    """A subscriber stopped without its stream being closed keeps nothing for long: the
    pool's close (which waits for every connection to come back) completes."""
    own_pool = await create_pool(dsn, schema, max_size=2)
    begin = HeldConnection(own_pool, unit_of_work, idle_seconds=0.05)
    await backend(Transactions(begin))
    await asyncio.wait_for(own_pool.close(), HANG_GUARD_SECONDS)


async def test_closing_gives_the_kept_connection_back_at_once(dsn: str, schema: str) -> None:
    own_pool = await create_pool(dsn, schema, max_size=2)
    transactions = held(postgres_transactions(own_pool, unit_of_work))
    await backend(transactions)
    await release_held(transactions)
    assert own_pool.get_idle_size() == own_pool.get_size()
    await asyncio.wait_for(own_pool.close(), HANG_GUARD_SECONDS)
