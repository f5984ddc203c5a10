"""The platform for end-to-end tests: real service processes, real Kafka, real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from contracts_schemas.base import Contract
from e2e_harness import Platform, running_platform
from servicekit import testing
from servicekit.kafka import reliable_producer
from servicekit.testing import required_env, unique


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    required_env("PORTAL_DATABASE_URL")
    required_env("PORTAL_KAFKA_BOOTSTRAP")
    with running_platform(("contracts", "loyalty"), prefix=unique("e2e") + ".") as running:
        yield running


@pytest.fixture
async def publish(platform: Platform) -> AsyncIterator[Any]:
    """Publish messages as the systems that own them would (identity, policy admin...)."""
    producer = reliable_producer(required_env("PORTAL_KAFKA_BOOTSTRAP"), unique("e2e-producer"))
    await producer.start()

    async def send(source: str, *messages: Contract) -> None:
        await testing.publish(producer, *messages, prefix=platform.prefix, source=source)

    yield send
    await producer.stop()
