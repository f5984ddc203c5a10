"""Run the library's stream and loops in a test until a condition holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import asyncpg
from contracts_schemas.base import Contract
from contracts_schemas.contracts import PremiumPaid
from servicekit.eventstore import EventStore
from servicekit.postgres import PostgresUnitOfWork, postgres_transactions
from servicekit.settings import ServiceSettings
from servicekit.stream import EventStream, InboxConsumer
from servicekit.testing import unique

Loop = Callable[[asyncio.Event], Awaitable[None]]
Stream = EventStream[PostgresUnitOfWork]


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


async def until(check: Callable[[], bool], within: float = 60.0) -> None:
    """`eventually` for a condition that needs no I/O (a consumer's counters)."""

    async def holds() -> bool:
        return check()

    await eventually(holds, within)


async def effects(pool: asyncpg.Pool) -> Sequence[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT event_id, amount FROM effects ORDER BY id")


async def record_effects(messages: Sequence[Contract], uow: PostgresUnitOfWork) -> None:
    """A deliberately non-idempotent effect: each call adds rows."""
    rows = []
    for message in messages:
        assert isinstance(message, PremiumPaid)
        rows.append((str(message.event_id), message.amount_cents))
    await uow.conn.executemany("INSERT INTO effects (event_id, amount) VALUES ($1, $2)", rows)


def settings(bootstrap: str, *, prefix: str = "", instance: str | None = None) -> ServiceSettings:
    return ServiceSettings(
        service_name="kit-test",
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        instance_id=instance or unique("instance"),
    )


def stream_on(pool: asyncpg.Pool, config: ServiceSettings) -> Stream:
    """An `EventStream` whose units of work are PostgreSQL transactions on `pool`."""
    store = EventStore("/test")
    return EventStream(config, postgres_transactions(pool, lambda c: PostgresUnitOfWork(c, store)))


def consuming(
    pool: asyncpg.Pool,
    config: ServiceSettings,
    group: str,
    topic: str,
    handler: Callable[[Sequence[Contract], PostgresUnitOfWork], Awaitable[None]] = record_effects,
) -> tuple[Stream, InboxConsumer[PostgresUnitOfWork]]:
    """A stream with one subscriber, `handler` as consumer group `group` of `topic`."""
    stream = stream_on(pool, config)
    stream.subscriber(group, topic)(handler)
    return stream, stream.consumers[0]


@asynccontextmanager
async def started(stream: Stream) -> AsyncIterator[Stream]:
    await stream.start()
    try:
        yield stream
    finally:
        await stream.close()


def handled(consumer: InboxConsumer[PostgresUnitOfWork]) -> int:
    """Messages the consumer is done with: applied, absorbed as duplicates, dead-lettered."""
    return consumer.applied + consumer.duplicates + consumer.dead_lettered
