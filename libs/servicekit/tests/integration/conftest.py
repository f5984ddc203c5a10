"""Fixtures on the real PostgreSQL and Kafka that `make test` starts (deploy/local)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import structlog
from aiokafka import AIOKafkaProducer
from servicekit.db import create_pool, drop_schema, migrate
from servicekit.kafka import reliable_producer
from servicekit.testing import required_env, unique

# A non-idempotent effect: a duplicate delivery that slipped through would add a row.
EFFECTS = (
    "0001_effects.sql",
    "CREATE TABLE effects (id bigserial PRIMARY KEY, event_id text NOT NULL, amount int NOT NULL);",
)


@pytest.fixture(scope="session", autouse=True)
def tracebacks_without_locals() -> Iterator[None]:
    """structlog's console renderer (these tests do not configure logging) prints each
    frame's locals with a logged exception; a failed batch's frames hold its thousand records,
    which took it some 20 s to print."""
    default = structlog.get_config()["processors"]
    plain = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(processors=[*default[:-1], plain])
    yield
    structlog.configure(processors=default)


@pytest.fixture(scope="session")
def dsn() -> str:
    return required_env("PORTAL_DATABASE_URL")


@pytest.fixture(scope="session")
def bootstrap() -> str:
    return required_env("PORTAL_KAFKA_BOOTSTRAP")


@pytest.fixture
async def schema(dsn: str) -> AsyncIterator[str]:
    name = unique("t")
    await migrate(dsn, name, [EFFECTS])
    yield name
    await drop_schema(dsn, name)


@pytest.fixture
async def pool(dsn: str, schema: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(dsn, schema, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = reliable_producer(bootstrap, unique("test-producer"))
    await producer.start()
    yield producer
    await producer.stop()
