"""The console's Kafka and PostgreSQL side on the real broker and database: dead letters
read with reason, position and decoded event; a replay goes to the original topic without
`x-dlq-*` headers and is recorded in the console's schema; a customer's history; lag."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import ConsumerRecord
from console import bootstrap
from console.adapters.audit import PostgresAudit
from console.auth import Operator
from console.bootstrap import wire
from console.config import ConsoleSettings
from console.handlers import Console
from contracts_schemas import topics
from contracts_schemas.cloudevents import encode
from contracts_schemas.topics import dead_letter_topic
from e2e_factories import account_activated, premium_paid
from servicekit.db import create_pool, drop_schema, migrate, migrations_in
from servicekit.kafka import ensure_topics, publish_all, reliable_producer
from servicekit.stream import DeadLetter, dead_letter_record
from servicekit.testing import publish, read_topic, required_env, unique

pytestmark = pytest.mark.integration
GROUP = "contracts.upstream-ingestion"


@pytest.fixture
async def ops() -> AsyncIterator[tuple[Console, str, PostgresAudit]]:
    prefix = unique("console-it") + "."
    schema = prefix.rstrip(".").replace("-", "_")
    dsn = required_env("PORTAL_DATABASE_URL")
    settings = ConsoleSettings(
        database_url=dsn, kafka_bootstrap=required_env("PORTAL_KAFKA_BOOTSTRAP"),
        topic_prefix=prefix, database_schema=schema, services={},
    )  # fmt: skip
    await migrate(dsn, schema, migrations_in(bootstrap.MIGRATIONS))
    pool = await create_pool(dsn, schema)
    audit = PostgresAudit(pool)
    async with httpx.AsyncClient() as http:
        console = wire(settings, audit, http)
        try:
            yield console, prefix, audit
        finally:
            await console.kafka.close()
            await pool.close()
            await drop_schema(dsn, schema)


async def _dead_letter(prefix: str) -> tuple[str, str]:
    """A poison message as the contracts consumer dead-letters it: (payment id, original
    topic)."""
    bootstrap_servers = required_env("PORTAL_KAFKA_BOOTSTRAP")
    original = prefix + topics.UPSTREAM_CONTRACTS
    dlq = prefix + dead_letter_topic(GROUP)
    await ensure_topics(bootstrap_servers, [original, dlq])
    paid = premium_paid("P-404", 2500, datetime(2026, 3, 1, tzinfo=UTC))
    cloud_event = encode(paid, "/collections")
    consumed: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=original, partition=0, offset=17, timestamp=0, timestamp_type=0,
        key=b"P-404", value=cloud_event.data, checksum=None, serialized_key_size=5,
        serialized_value_size=len(cloud_event.data), headers=cloud_event.headers(),
    )  # fmt: skip
    letter = DeadLetter(consumed, "policy_not_found: no policy 'P-404' has been issued")
    producer = reliable_producer(bootstrap_servers, "console-it")
    await producer.start()
    try:
        await publish_all(producer, [dead_letter_record(dlq, prefix + GROUP, letter)])
    finally:
        await producer.stop()
    return paid.message_id, original


async def test_ops1_dead_letter_listed_replayed_to_its_topic_without_dlq_headers_and_recorded(
    ops: tuple[Console, str, PostgresAudit],
) -> None:
    console, prefix, audit = ops
    message_id, original = await _dead_letter(prefix)
    letters = await console.dead_letters()
    assert len(letters) == 1
    letter = letters[0]
    assert letter["reason"].startswith("policy_not_found")
    assert (letter["original_topic"], letter["original_partition"], letter["original_offset"]) == (
        original, 0, 17)  # fmt: skip
    assert letter["event_id"] == message_id
    assert letter["event"]["policy_number"] == "P-404"

    results = await console.replay([letter["ref"]], Operator("op-1", "anna"))
    assert [r.ok for r in results] == [True]
    replayed = await read_topic(required_env("PORTAL_KAFKA_BOOTSTRAP"), original, at_least=1)
    assert len(replayed) == 1
    headers = dict(replayed[0].headers)
    assert not [k for k in headers if k.startswith("x-dlq-")]
    assert headers["ce_id"].decode() == message_id
    assert replayed[0].key == b"P-404"

    recorded = await audit.replays()
    assert [(r.operator, r.dead_letter, r.outcome) for r in recorded] == [
        ("anna (op-1)", letter["ref"], "replayed")]  # fmt: skip
    assert recorded[0].replayed_at is not None
    again = await console.dead_letters()
    assert len(again[0]["replays"]) == 1


async def test_ops1_customer_history_across_topics_and_the_lookup_is_recorded(
    ops: tuple[Console, str, PostgresAudit],
) -> None:
    console, prefix, audit = ops
    customer = unique("C")
    producer = reliable_producer(required_env("PORTAL_KAFKA_BOOTSTRAP"), "console-it")
    await producer.start()
    try:
        await publish(
            producer, account_activated(customer, datetime(2026, 3, 2, tzinfo=UTC)),
            account_activated(unique("other"), datetime(2026, 3, 2, tzinfo=UTC)),
            prefix=prefix, source="/identity",
        )  # fmt: skip
    finally:
        await producer.stop()
    entries = await console.customer_history(
        customer, "Rückfrage Ticket 12", Operator("op-1", "anna")
    )
    assert [e.event_type.split(".")[-2] for e in entries] == ["AccountActivated"]
    lookups = await audit.lookups()
    assert (lookups[0]["customer_id"], lookups[0]["reason"]) == (customer, "Rückfrage Ticket 12")


def test_ops3_portal_lists_and_replays_dead_letters_and_fails_with_non_zero_exit() -> None:
    prefix = unique("portal-cli") + "."
    schema = prefix.rstrip(".").replace("-", "_")
    env = os.environ | {"PORTAL_TOPIC_PREFIX": prefix, "PORTAL_DATABASE_SCHEMA": schema,
                        "PORTAL_SERVICES": "{}", "COLUMNS": "300"}  # fmt: skip
    portal = str(Path(sys.executable).parent / "portal")
    try:
        asyncio.run(_dead_letter(prefix))
        listed = subprocess.run(
            [portal, "dead-letters", "list"], env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert "policy_not_found" in listed.stdout
        assert "1 dead letters" in listed.stdout
        assert "migration" not in listed.stdout
        found = re.search(re.escape(prefix + dead_letter_topic(GROUP)) + r":\d+:\d+", listed.stdout)
        assert found is not None, listed.stdout
        ref = found.group(0)
        replayed = subprocess.run(
            [portal, "--operator", "anna", "dead-letters", "replay", ref], env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        missing = subprocess.run(
            [portal, "dead-letters", "replay", f"{prefix}{dead_letter_topic(GROUP)}:0:99"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert missing.returncode == 1
        assert "REFUSED" in missing.stdout
    finally:
        asyncio.run(drop_schema(required_env("PORTAL_DATABASE_URL"), schema))
