"""Contracts intake alone: upstream PremiumPaid batches through the ingestion subscriber,
relay off (issue 12: where the PremiumPaid chain of bench/e2e.py spends its time).

- Subject: the `contracts.upstream-ingestion` consumer as `contracts serve` wires it
  (`bootstrap.build` + `entrypoints.stream.subscribe`), fed pre-encoded CloudEvents
  records of `PremiumPaidUpstream` in batches of `BATCH` (what one fetch hands it when the
  chain keeps up at 1,000/s), each batch one `InboxConsumer.process` call: envelope decoding
  and validation, dedupe by (source, message id) with the body fingerprint, the policy
  stream's state, the decision, the append with its outbox rows, the idempotency records,
  one transaction per batch. No Kafka fetch or offset commit (bench/consumer.py measures
  those); the outbox is not relayed.
- Baseline: the rows the subject wrote (events, outbox, idempotency records, customer
  policies), written again into a fresh schema of the same migrations by plain unnest
  INSERTs, one transaction per batch of the same size.
- The payments are spread over `POLICIES` policies issued first (not timed), so each
  policy's stream grows by events/POLICIES payments during the run, as in the e2e run.

`async def run(bootstrap, dsn, quick=False) -> list[Row]`; alone:
`python -m bench.contracts_intake [--quick] [EVENTS]`.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from contracts.bootstrap import MIGRATIONS, build
from contracts.config import ContractsSettings
from contracts.entrypoints.stream import INGESTION_GROUP, subscribe
from contracts_schemas.base import UpstreamMessage
from contracts_schemas.cloudevents import encode
from contracts_schemas.common import Carrier, ProductLine
from contracts_schemas.contracts import PremiumPaid
from contracts_schemas.upstream import PolicyIssuedUpstream, PremiumPaidUpstream
from servicekit.db import create_pool, drop_schema, migrate, migrations_in
from servicekit.testing import unique

from bench.common import BenchFailure, Row, frozen_heap, profiled, row, say

SECTION = "contracts"
BATCH = 100
POLICIES = 500
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def _issued(i: int, salt: str) -> PolicyIssuedUpstream:
    return PolicyIssuedUpstream(
        message_id=f"pa-{salt}-{i}", source_system="policy-admin",
        occurred_at=NOW - timedelta(days=30), policy_number=f"HR-{salt}-{i}",
        product_line=ProductLine.HOUSEHOLD_CONTENTS, carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG,
        policyholder_ids=(f"cust-{salt}-{i}",), start_date=date(2026, 1, 1),
        tariff="Hausrat Komfort", annual_premium_cents=14_460,
    )  # fmt: skip


def _paid(i: int, salt: str) -> PremiumPaidUpstream:
    return PremiumPaidUpstream(
        message_id=f"co-{salt}-{i}", source_system="collections",
        occurred_at=NOW - timedelta(days=1), policy_number=f"HR-{salt}-{i % POLICIES}",
        payment_id=f"pay-{salt}-{i}", amount_cents=12_050,
    )  # fmt: skip


def _records(topic: str, messages: Sequence[UpstreamMessage], first_offset: int) -> list[Any]:
    found = []
    for n, message in enumerate(messages):
        ce = encode(message, f"/{message.source_system}")
        found.append(ConsumerRecord(
            topic=topic, partition=0, offset=first_offset + n, timestamp=0, timestamp_type=0,
            key=message.policy_number.encode(), value=ce.data, checksum=None,
            serialized_key_size=-1, serialized_value_size=len(ce.data), headers=ce.headers(),
        ))  # fmt: skip
    return found


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _subject(bootstrap: str, dsn: str, events: int, batch: int) -> tuple[float, float, str]:
    """Seconds the payments took, this process's CPU per payment (us), and the schema
    (kept for the baseline)."""
    prefix = unique("bench_ct") + "."
    settings = ContractsSettings(
        database_url=dsn, kafka_bootstrap=bootstrap, database_schema=prefix.rstrip("."),
        topic_prefix=prefix, jwks='{"keys": []}', log_level="WARNING",
    )  # fmt: skip
    service = await build(settings)
    try:
        subscribe(service.stream, service.contracts)
        consumer = next(c for c in service.stream.consumers if c.name.endswith(INGESTION_GROUP))
        salt = uuid.uuid4().hex[:8]
        topic = prefix + "upstream.contracts.v1"
        issued = _records(topic, [_issued(i, salt) for i in range(POLICIES)], 0)
        for chunk in _batches(issued, batch):
            await consumer.process(chunk)
        payments = _records(topic, [_paid(i, salt) for i in range(events)], POLICIES)
        say(f"contracts: {events:,} PremiumPaid over {POLICIES} policies, batches of {batch}")
        with frozen_heap(), profiled("contracts_intake"):
            started, cpu = time.perf_counter(), time.process_time()
            for chunk in _batches(payments, batch):
                await consumer.process(chunk)
            seconds = time.perf_counter() - started
            cpu_us = (time.process_time() - cpu) / events * 1e6
        say(f"contracts: intake {events / seconds:,.0f} PremiumPaid/s, {cpu_us:,.0f} us CPU each")
        if consumer.dead_lettered or consumer.applied != POLICIES + events:
            raise BenchFailure(f"contracts intake applied {consumer.applied}, "
                               f"dead-lettered {consumer.dead_lettered}")  # fmt: skip
        return seconds, cpu_us, settings.schema_name
    finally:
        await service.close()


_TABLES: dict[str, tuple[str, ...]] = {
    # table: (columns, with their array types for unnest)
    "events": ("event_id::uuid", "stream_id::text", "stream_version::int",
               "event_type::text", "occurred_at::timestamptz", "payload::jsonb"),
    "outbox": ("event_id::text", "event_ref::uuid", "topic::text", "partition_key::text",
               "source::text", "traceparent::text"),
    "idempotency_records": ("scope::text", "key::text", "fingerprint::text",
                            "event_ids::text"),
}  # fmt: skip


async def _written(dsn: str, schema: str, salt_scope: str) -> dict[str, list[asyncpg.Record]]:
    """The payments' rows the subject wrote, in the order it wrote them."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    paid_type = PremiumPaid.type_name()
    try:
        return {
            "events": await conn.fetch(
                "SELECT event_id, stream_id, stream_version, event_type, occurred_at,"
                " payload::text AS payload FROM events WHERE event_type = $1"
                " ORDER BY global_position",
                paid_type,
            ),
            "outbox": await conn.fetch(
                "SELECT o.event_id, o.event_ref, o.topic, o.partition_key, o.source,"
                " o.traceparent FROM outbox o JOIN events e ON e.event_id = o.event_ref"
                " WHERE e.event_type = $1 ORDER BY e.global_position",
                paid_type,
            ),
            "idempotency_records": await conn.fetch(
                "SELECT scope, key, fingerprint, event_ids::text[]::text AS event_ids"
                " FROM idempotency_records WHERE scope = $1 ORDER BY recorded_at, key",
                salt_scope,
            ),
        }
    finally:
        await conn.close()


async def _baseline(
    dsn: str, written: dict[str, list[asyncpg.Record]], batch: int
) -> tuple[float, float]:
    """The same rows by plain unnest INSERTs, one transaction per batch of `batch` payments."""
    schema = unique("bench_ct_raw")
    await migrate(dsn, schema, migrations_in(MIGRATIONS))
    pool = await create_pool(dsn, schema, max_size=2)
    try:
        columns = {t: [c.split("::")[0] for c in cs] for t, cs in _TABLES.items()}
        statements = {
            t: f"INSERT INTO {t} ({', '.join(columns[t])}) SELECT * FROM unnest("  # noqa: S608
            + ", ".join(f"${n}::{c.split('::')[1]}[]" for n, c in enumerate(cs, 1))
            + ")"
            for t, cs in _TABLES.items()
        }
        statements["idempotency_records"] = (
            "INSERT INTO idempotency_records (scope, key, fingerprint, event_ids)"
            " SELECT s, k, f, e::uuid[] FROM unnest($1::text[], $2::text[], $3::text[],"
            " $4::text[]) AS x(s, k, f, e)"
        )
        count = len(written["events"])
        async with pool.acquire() as conn:
            with frozen_heap():
                started, cpu = time.perf_counter(), time.process_time()
                for first in range(0, count, batch):
                    async with conn.transaction():
                        for table, rows in written.items():
                            chunk = rows[first : first + batch]
                            columns_of = ([r[c] for r in chunk] for c in columns[table])
                            await conn.execute(statements[table], *columns_of)
                return time.perf_counter() - started, (time.process_time() - cpu) / count * 1e6
    finally:
        await pool.close()
        await drop_schema(dsn, schema)


async def run(bootstrap: str, dsn: str, quick: bool = False, events: int | None = None
              ) -> list[Row]:  # fmt: skip
    events = (5_000 if quick else 30_000) if events is None else events
    seconds, cpu_us, schema = await _subject(bootstrap, dsn, events, BATCH)
    try:
        written = await _written(dsn, schema, "upstream:collections")
    finally:
        await drop_schema(dsn, schema)
    if len(written["events"]) != events or len(written["idempotency_records"]) != events:
        wrote = f"{len(written['events'])} events, {len(written['idempotency_records'])} records"
        raise BenchFailure(f"the subject wrote {wrote}, not {events} each")
    base_seconds, base_cpu_us = await _baseline(dsn, written, BATCH)
    return [
        row(
            SECTION, f"intake PremiumPaid, batches of {BATCH}", events=events, seconds=seconds,
            baseline="raw unnest INSERT of the same rows", baseline_events=events,
            baseline_seconds=base_seconds,
            note=(f"InboxConsumer.process of the ingestion subscriber (decode, dedupe, state,"
                  f" decide, append + outbox, idempotency records), relay off; {POLICIES}"
                  f" policies, {events // POLICIES} payments each; the baseline writes the"
                  " events, outbox and idempotency rows the subject wrote, one transaction"
                  f" per batch; this process's CPU per event: {cpu_us:,.0f} us (baseline"
                  f" {base_cpu_us:,.0f} us), PostgreSQL's not counted"),
        )
    ]  # fmt: skip


if __name__ == "__main__":
    import asyncio

    from bench.__main__ import env, print_table

    count = int(sys.argv[-1]) if sys.argv[-1].isdigit() else None
    print_table(asyncio.run(run(env("PORTAL_KAFKA_BOOTSTRAP"), env("PORTAL_DATABASE_URL"),
                                quick="--quick" in sys.argv, events=count)))  # fmt: skip
