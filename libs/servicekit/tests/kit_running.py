"""Run a background loop of the library in a test until a condition holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import asyncpg
from contracts_schemas.contracts import PremiumPaid
from servicekit.consumer import Delivery

Loop = Callable[[asyncio.Event], Awaitable[None]]


@asynccontextmanager
async def running(loop: Loop) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task: asyncio.Task[None] = asyncio.create_task(loop(stop))  # type: ignore[arg-type]
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.1)


async def effects(pool: asyncpg.Pool) -> Sequence[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT event_id, amount FROM effects ORDER BY id")


async def record_effects(conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
    """A deliberately non-idempotent effect: each call adds rows."""
    rows = []
    for delivery in deliveries:
        assert isinstance(delivery.message, PremiumPaid)
        rows.append((delivery.event_id, delivery.message.amount_cents))
    await conn.executemany("INSERT INTO effects (event_id, amount) VALUES ($1, $2)", rows)
