"""The platforms for end-to-end tests: real service processes, real Kafka, real PostgreSQL
and Redis. One platform per session (starting seven processes on two cores takes a while);
every test makes customers of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from contracts_schemas.base import Contract
from e2e_harness import FULL, Platform, running_platform
from servicekit import testing
from servicekit.kafka import reliable_producer
from servicekit.testing import required_env, unique


@pytest.fixture(scope="session")
def platform(redis_url: str) -> Iterator[Platform]:
    """What customers use: identity, contracts, loyalty, notifier (with its stand-ins),
    claims, documents and the gateway (its rate limits in `redis_url`); tokens only from
    identity."""
    required_env("PORTAL_DATABASE_URL")
    required_env("PORTAL_KAFKA_BOOTSTRAP")
    with running_platform(FULL, prefix=unique("e2e") + ".") as running:
        yield running


@pytest.fixture(scope="session")
def test_key_platform() -> Iterator[Platform]:
    """The walking skeleton without identity: contracts and loyalty, tokens minted with a
    key of the test's own, identity's events published by the test."""
    required_env("PORTAL_DATABASE_URL")
    required_env("PORTAL_KAFKA_BOOTSTRAP")
    with running_platform(
        ("contracts", "loyalty"), prefix=unique("e2e") + ".", test_key=True
    ) as running:
        yield running


async def _publisher(platform: Platform) -> AsyncIterator[Any]:
    producer = reliable_producer(required_env("PORTAL_KAFKA_BOOTSTRAP"), unique("e2e-producer"))
    await producer.start()

    async def send(source: str, *messages: Contract) -> None:
        await testing.publish(producer, *messages, prefix=platform.prefix, source=source)

    yield send
    await producer.stop()


@pytest.fixture
async def publish(platform: Platform) -> AsyncIterator[Any]:
    """Publish messages as the upstream systems that own them would (policy admin...)."""
    async for send in _publisher(platform):
        yield send


@pytest.fixture
async def publish_with_test_key(test_key_platform: Platform) -> AsyncIterator[Any]:
    """Publish to the walking skeleton's topics (as identity, policy admin...)."""
    async for send in _publisher(test_key_platform):
        yield send
