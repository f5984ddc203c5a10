"""Claim reports per second with a 1 MB attachment (issue 10), next to the raw write.

- Subject: `POST /claims` (multipart: the form fields and one 1,000,000-byte photo) to the
  claims service running as a process (`claims serve`, its own schema and topics, tokens
  from a key of this run), from CONCURRENCY clients at once. The service sniffs the bytes,
  decides, stores the blob, the claim, its events and outbox rows in one transaction, and
  its relay publishes ClaimReported/ClaimStatusChanged meanwhile.
- Baseline: exactly the rows the service wrote - read back from its schema afterwards,
  every table that grew (the blobs with the same bytes, the claims, events...), identity
  columns left to the database as the service leaves them, and an outbox row per event as
  `EventStore.append` queued it (the relay deletes the rows it sent) - inserted with raw
  asyncpg into a fresh schema of the same migrations (same indexes and constraints), one
  transaction per report with the same number of rows of each table, from the same number
  of connections. The ratio is reports/s through the service over reports/s of the raw write.

`async def run(bootstrap, dsn, quick=False) -> list[Row]`; alone: `python -m bench.claims`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import httpx
from claims.bootstrap import MIGRATIONS
from contracts_schemas.common import Carrier, ProductLine
from contracts_schemas.contracts import PolicyIssued
from contracts_schemas.registry import REGISTRY, partition_key, topic_of
from servicekit.db import migrations_in
from servicekit.kafka import reliable_producer
from servicekit.testing import unique

from bench.common import BenchFailure, Row, bench_schema, row, say
from bench.e2e import Services, count, publish, running, until

SECTION = "claims"
ATTACHMENT_BYTES = 1_000_000
PNG_SIGNATURE = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
)
CONCURRENCY = 4
CUSTOMERS = 8
WARMUP = 8  # reports (and baseline transactions) before the clock starts
REPORTS = {True: 40, False: 200}  # quick, full: counted reports


def attachment() -> bytes:
    """A PNG's signature and header, then incompressible bytes: 1 MB, as a photo is."""
    return PNG_SIGNATURE + os.urandom(ATTACHMENT_BYTES - len(PNG_SIGNATURE))


def _policy(customer: str) -> PolicyIssued:
    policy = f"pol-{customer}"
    return PolicyIssued(
        event_id=uuid.uuid4(), aggregate_id=policy, aggregate_version=1,
        occurred_at=datetime.now(UTC), customer_ids=(customer,), policy_id=policy,
        policy_number=f"HR-{customer.upper()}", product_line=ProductLine.HOUSEHOLD_CONTENTS,
        carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG, point_relevant=True,
        policyholder_ids=(customer,), start_date=date(2024, 1, 1),
    )  # fmt: skip


async def _customers(services: Services, dsn: str, bootstrap: str) -> list[str]:
    """Customers whose policies the claims service knows (contracts' PolicyIssued)."""
    salt = secrets.token_hex(4)
    customers = [f"bench-{salt}-{i}" for i in range(CUSTOMERS)]
    producer = reliable_producer(bootstrap, unique("bench-claims-contracts"))
    await producer.start()
    try:
        await publish(producer, [_policy(c) for c in customers], services.prefix, "/contracts")
    finally:
        await producer.stop()
    schema = services.schema("claims")

    async def known() -> bool:
        return await count(dsn, schema, "SELECT count(*) FROM policies") >= CUSTOMERS

    await until(known, "claims to know the policies")
    return customers


async def _report_all(
    services: Services, customers: Sequence[str], photo: bytes, first: int, n: int
) -> float:
    """Reports first..first+n-1 from CONCURRENCY clients; seconds taken."""
    tokens = {c: services.token(c) for c in customers}
    today = datetime.now(UTC).date().isoformat()
    queue = list(range(first, first + n))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=services.urls["claims"], timeout=60) as http:
            while queue:
                i = queue.pop(0)
                customer = customers[i % len(customers)]
                response = await http.post(
                    "/claims",
                    headers={"Authorization": f"Bearer {tokens[customer]}"},
                    data={"policy_id": f"pol-{customer}", "claim_type": "household",
                          "incident_date": today, "place": "Köln, Heidestraße 17",
                          "description": f"Wasserschaden in der Küche ({i})",
                          "notification_channel": "email"},
                    files=[("attachments", (f"kueche-{i}.png", photo, "image/png"))],
                )  # fmt: skip
                if response.status_code != 201:
                    raise BenchFailure(f"report: {response.status_code} {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------
# The rows the service wrote, and the raw write of the same
# ---------------------------------------------------------------------------------------

Snapshot = dict[str, tuple[int, int | None]]  # table -> (rows, max identity value)


async def _tables(conn: Any) -> dict[str, tuple[list[str], str | None]]:
    """Each table of the schema: its columns the writer sets, and its identity column."""
    found: dict[str, tuple[list[str], str | None]] = {}
    for r in await conn.fetch(
        "SELECT table_name, column_name, is_identity, is_generated FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        columns, identity = found.get(r["table_name"], ([], None))
        if r["is_identity"] == "YES":
            identity = r["column_name"]
        elif r["is_generated"] == "NEVER":
            columns.append(r["column_name"])
        found[r["table_name"]] = (columns, identity)
    return found


async def _snapshot(conn: asyncpg.Connection, tables: dict[str, tuple[list[str], str | None]]
                    ) -> Snapshot:  # fmt: skip
    shot: Snapshot = {}
    for table, (_, identity) in tables.items():
        highest = f"max({identity})" if identity else "NULL"
        r = await conn.fetchrow(f"SELECT count(*) AS n, {highest} AS top FROM {table}")  # noqa: S608
        assert r is not None
        shot[table] = (int(r["n"]), r["top"])
    return shot


Tables = dict[str, tuple[list[str], str | None]]  # table -> (columns written, identity)


async def _written(
    conn: asyncpg.Connection, tables: Tables, before: Snapshot, after: Snapshot
) -> dict[str, list[asyncpg.Record]]:
    """The rows the reports added to each table that grew, in the order they were written
    (identity) or by their first column."""
    rows: dict[str, list[asyncpg.Record]] = {}
    for table, (columns, identity) in tables.items():
        (n_before, top_before), (n_after, _) = before[table], after[table]
        if n_after == n_before:
            continue
        listed = ", ".join(columns)
        if identity is not None:
            rows[table] = await conn.fetch(
                f"SELECT {listed} FROM {table} WHERE {identity} > $1 ORDER BY {identity}",  # noqa: S608
                top_before or 0,
            )
        elif n_before == 0:
            rows[table] = await conn.fetch(f"SELECT {listed} FROM {table} ORDER BY 1")  # noqa: S608
        else:
            raise BenchFailure(f"cannot tell which rows of {table} the reports wrote")
    return rows


#: What the service stores beside an event published from a request: its span's context.
_TRACEPARENT = "00-" + "4bf92f3577b34da6a3ce929d0e0e4736" + "-" + "00f067aa0ba902b7" + "-01"


def _outbox_rows(events: Sequence[Mapping[str, Any]], columns: list[str], prefix: str
                 ) -> list[dict[str, Any]]:  # fmt: skip
    """The lean outbox row `EventStore.append` queued for each of `events`."""
    rows = []
    for event in events:
        message = REGISTRY[event["event_type"]].model.model_validate_json(event["payload"])
        queued = {"event_id": str(event["event_id"]), "event_ref": event["event_id"],
                  "topic": prefix + topic_of(message), "partition_key": partition_key(message),
                  "source": "/claims", "traceparent": _TRACEPARENT,
                  "created_at": event["recorded_at"]}  # fmt: skip
        rows.append({c: queued.get(c) for c in columns})
    return rows


async def _raw_write(dsn: str, rows: Mapping[str, Sequence[Mapping[str, Any]]], reports: int,
                     counted_from: int) -> float:  # fmt: skip
    """The same rows into a fresh schema of the same migrations, one transaction per
    report (each table's rows dealt out evenly), CONCURRENCY connections; seconds of the
    transactions from `counted_from` on."""
    migrations = migrations_in(MIGRATIONS)
    async with bench_schema(dsn, "bench_claims_raw", migrations, CONCURRENCY) as (_, pool):
        async with pool.acquire() as conn:
            tables = await _tables(conn)
        statements = {
            t: (f"INSERT INTO {t} ({', '.join(tables[t][0])}) VALUES "  # noqa: S608
                f"({', '.join(f'${i + 1}' for i in range(len(tables[t][0])))})")
            for t in rows
        }  # fmt: skip

        def share(i: int) -> list[tuple[str, list[tuple[Any, ...]]]]:
            found = []
            for table, records in rows.items():
                lo, hi = len(records) * i // reports, len(records) * (i + 1) // reports
                columns = tables[table][0]
                found.append((table, [tuple(r[c] for c in columns) for r in records[lo:hi]]))
            return found

        async def write(indexes: list[int]) -> None:
            while indexes:
                i = indexes.pop(0)
                async with pool.acquire() as conn, conn.transaction():
                    for table, values in share(i):
                        if values:
                            await conn.executemany(statements[table], values)

        warm = list(range(counted_from))
        await asyncio.gather(*(write(warm) for _ in range(CONCURRENCY)))
        timed = list(range(counted_from, reports))
        started = time.perf_counter()
        await asyncio.gather(*(write(timed) for _ in range(CONCURRENCY)))
        return time.perf_counter() - started


async def run(bootstrap: str, dsn: str, quick: bool = False) -> list[Row]:
    counted = REPORTS[quick]
    photo = attachment()
    say("claims: starting the claims service")
    async with running(("claims",), dsn, bootstrap) as services:
        customers = await _customers(services, dsn, bootstrap)
        conn = await asyncpg.connect(
            dsn, server_settings={"search_path": services.schema("claims")}
        )
        try:
            tables = await _tables(conn)
            outbox_columns, _ = tables.pop("outbox")  # sent rows are deleted: rebuilt below
            before = await _snapshot(conn, tables)
            say(f"claims: {WARMUP} + {counted} reports with 1 MB, {CONCURRENCY} at a time")
            await _report_all(services, customers, photo, 0, WARMUP)
            seconds = await _report_all(services, customers, photo, WARMUP, counted)
            after = await _snapshot(conn, tables)
            written: dict[str, Sequence[Mapping[str, Any]]] = {
                **await _written(conn, tables, before, after)
            }
            written["outbox"] = _outbox_rows(written.get("events", []), outbox_columns,
                                             services.prefix)  # fmt: skip
        finally:
            await conn.close()
    per_report = {t: len(r) / (WARMUP + counted) for t, r in written.items()}
    say("claims: raw asyncpg write of the same rows")
    raw_seconds = await _raw_write(dsn, written, WARMUP + counted, WARMUP)
    shape = ", ".join(f"{t} {n:g}" for t, n in sorted(per_report.items()))
    return [
        row(SECTION, "claim reports with a 1 MB attachment (POST /claims)", events=counted,
            seconds=seconds, baseline="raw asyncpg INSERT of the same rows and bytes",
            baseline_events=counted, baseline_seconds=raw_seconds,
            note=(f"no aim set (issue 10 asks for the figure); {CONCURRENCY} clients, direct"
                  " to the claims service (no gateway);"
                  f" rows per report: {shape}; {counted * ATTACHMENT_BYTES / seconds / 1e6:.1f}"
                  f" MB/s vs raw {counted * ATTACHMENT_BYTES / raw_seconds / 1e6:.1f} MB/s")),
    ]  # fmt: skip


if __name__ == "__main__":
    from bench.__main__ import env, print_table

    print_table(asyncio.run(run(env("PORTAL_KAFKA_BOOTSTRAP"), env("PORTAL_DATABASE_URL"),
                                quick="--quick" in sys.argv)))  # fmt: skip
