"""End to end on real service processes: latency at a steady rate, and memory (issue 12).

- `premium -> statement`: an upstream PremiumPaid (collections, on Kafka) through contracts
  (intake, event store, outbox, relay) and loyalty (facts) until the customer's statement
  shows it pending. Aim: p99 < 250 ms at a steady 1,000 events/s.
- `claim status -> e-mail`: a ClaimStatusChanged on the claims topic through the notifier
  (plan, render, delivery row, worker, SMTP) until the SMTP sink accepted the e-mail.
  Aim: p99 < 1 s at 100 events/s (issue 12); p50/p99 at 50 events/s (issue 10).
- `RSS <service>`: resident size of each service process, sampled every half second while
  the load above runs (after the warm-up). Aim: < 250 MB each.

How it is measured:
- The services run as processes (`<service> serve`) on the shared Kafka and PostgreSQL,
  with a topic prefix and schemas of their own (as tests/e2e_harness.py starts them);
  tokens are minted with a key of this run (`PORTAL_JWKS`); schemas and topics are
  dropped afterwards.
- Open loop: event i is due at t0 + i/rate and sent then whatever happened to the ones
  before (records are encoded before the clock starts); its latency counts from that due
  time, so a backlog (or a late generator) shows in the figures instead of slowing the
  load down (no coordinated omission). The first seconds are a warm-up, not counted.
- Seen: a PremiumPaid when loyalty's `facts` (what the statement folds) has the payment,
  polled every 5 ms by the id of the fact (primary-key lookups: the observer's cost grows
  with the payments in flight, not with the facts stored), the time taken after the query
  returned (an upper bound); every 50th payment is also followed through `GET
  /loyalty/statement` until that payment is in `pending` (the `via statement` figure),
  from the moment its fact was seen: the statement is a fold of the facts, so it cannot
  show the payment earlier, and probes started at the send (polling a statement every
  10 ms for the whole latency) were themselves most of the HTTP load. An e-mail when the
  sink's DATA handler accepts it (one customer, so one recipient, per event).
- An event never seen within the deadline counts as infinitely late.

`async def run(bootstrap, dsn, quick=False) -> list[Row]`; alone: `python -m bench.e2e`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.smtp import SMTP, Envelope, Session
from contracts.domain.policy import event_seed, upstream_event_ids
from contracts_schemas.base import Contract
from contracts_schemas.claims import ClaimStatus, ClaimStatusChanged
from contracts_schemas.cloudevents import encode
from contracts_schemas.common import Carrier, PostalAddress, ProductLine
from contracts_schemas.contracts import PremiumPaid
from contracts_schemas.identity import AccountActivated, CustomerRegistered
from contracts_schemas.registry import REGISTRY, topic_of
from contracts_schemas.upstream import PolicyIssuedUpstream, PremiumPaidUpstream
from servicekit.auth import generate_signing_key, mint_token
from servicekit.db import drop_schema
from servicekit.kafka import OutgoingRecord, publish_all, reliable_producer
from servicekit.testing import header, read_whole_topic, unique

from bench.common import BenchFailure, Row, row, say

SECTION = "e2e"
BIN = Path(sys.executable).parent
RSS_AIM_MB = 250.0
PREMIUM_AIM_MS = 250.0
CLAIM_AIM_MS = 1000.0
POLL_SECONDS = 0.005
PROBE_EVERY = 50
WATCH_AT_ONCE = 500  # outstanding payments asked for per poll (oldest first)
SAMPLE_SECONDS = 0.5
SETUP_DEADLINE = 120.0
START_DEADLINE = 300.0  # three processes starting at once on a loaded 2-core machine


@dataclass(frozen=True)
class Load:
    """A steady rate for `warmup` seconds (not counted), then `seconds` (counted)."""

    rate: float
    warmup: float
    seconds: float
    stall: float  # after the last send: give up once nothing new was seen for this long
    cap: float  # ... or this long after the last event was due, whatever happens

    @property
    def count(self) -> int:
        return int(self.rate * (self.warmup + self.seconds))

    @property
    def first_counted(self) -> int:
        return int(self.rate * self.warmup)


@dataclass(frozen=True)
class Plan:
    premium: Load  # PremiumPaid -> statement (issue 12: 1,000/s)
    claim100: Load  # ClaimStatusChanged -> e-mail (issue 12: 100/s)
    claim50: Load  # the same at issue 10's 50/s
    customers: int  # enrolled customers the payments are spread over


QUICK = Plan(Load(1000, 2, 6, 10, 60), Load(100, 2, 6, 10, 60), Load(50, 1, 5, 10, 60),
             customers=50)  # fmt: skip
FULL = Plan(Load(1000, 5, 30, 20, 180), Load(100, 5, 30, 20, 180), Load(50, 5, 30, 20, 180),
            customers=500)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Service processes
# ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Services:
    """Service processes of one run: their URLs, processes, schemas and a token key."""

    prefix: str
    private_key: dict[str, Any]
    workdir: Path
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def schema(self, service: str) -> str:
        return f"{self.prefix.rstrip('.').replace('-', '_')}_{service}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def token(self, customer_id: str) -> str:
        expires = datetime.now(UTC) + timedelta(hours=2)
        return mint_token(self.private_key, customer_id, "portal", expires)

    def log_tail(self, service: str) -> str:
        return (self.workdir / f"{service}.log").read_text(errors="replace")[-3000:]


@contextlib.asynccontextmanager
async def running(
    names: Sequence[str], dsn: str, bootstrap: str, own: Mapping[str, Mapping[str, str]] = {}
) -> AsyncIterator[Services]:
    """`names` as `<name> serve` processes with a prefix and schemas of their own; stopped,
    their schemas dropped and their topics deleted afterwards."""
    private_key, jwks = generate_signing_key("bench")
    prefix = unique("bench-e2e") + "."
    services = Services(prefix, private_key, Path(tempfile.mkdtemp(prefix="bench-e2e-")))
    ports = {name: free_port() for name in names}
    services.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    inherited = {k: v for k, v in os.environ.items() if k not in {"PORTAL_JWKS_URL"}}
    try:
        for name in names:
            env = inherited | {
                "PORTAL_DATABASE_URL": dsn, "PORTAL_KAFKA_BOOTSTRAP": bootstrap,
                "PORTAL_TOPIC_PREFIX": prefix, "PORTAL_DATABASE_SCHEMA": services.schema(name),
                "PORTAL_INSTANCE_ID": prefix + name, "PORTAL_HTTP_PORT": str(ports[name]),
                "PORTAL_JWKS": json.dumps(jwks), "PORTAL_LOG_LEVEL": "WARNING",
            } | dict(own.get(name, {}))  # fmt: skip
            services.processes[name] = _spawn(name, env, services.workdir / f"{name}.log")
        async with httpx.AsyncClient(timeout=2) as probe:
            for name in names:
                await _ready(probe, services, name)
        yield services
    finally:
        for process in services.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in services.processes.values():
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
        for name in names:
            await drop_schema(dsn, services.schema(name))
        await _delete_topics(bootstrap, prefix)
        shutil.rmtree(services.workdir, ignore_errors=True)


def _spawn(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our own console scripts
            [str(BIN / name), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def _ready(probe: httpx.AsyncClient, services: Services, name: str) -> None:
    deadline = time.monotonic() + START_DEADLINE
    answer = "no answer"
    while time.monotonic() < deadline:
        if services.processes[name].poll() is not None:
            raise BenchFailure(f"{name} exited:\n{services.log_tail(name)}")
        try:
            response = await probe.get(services.urls[name] + "/health/ready")
        except httpx.HTTPError as exc:
            answer = repr(exc)
        else:
            if response.status_code == 200:
                return
            answer = f"{response.status_code} {response.text[:300]}"
        await asyncio.sleep(0.2)
    raise BenchFailure(f"{name} not ready ({answer}):\n{services.log_tail(name)}")


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    """Best effort: the names are unique to this run, so leftovers never collide."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    with contextlib.suppress(Exception):
        await admin.start()
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
    with contextlib.suppress(Exception):
        await admin.close()


def rss_mb(pid: int) -> float:
    """Resident size of a process (VmRSS of /proc/<pid>/status), MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


class RssSampler:
    """Samples each service process's RSS every SAMPLE_SECONDS while `sampling()` runs."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.samples: dict[str, list[float]] = {name: [] for name in services.processes}

    @contextlib.asynccontextmanager
    async def sampling(self) -> AsyncIterator[None]:
        async def sample() -> None:
            while True:
                for name, process in self.services.processes.items():
                    with contextlib.suppress(OSError):
                        self.samples[name].append(rss_mb(process.pid))
                await asyncio.sleep(SAMPLE_SECONDS)

        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def rows(self, section: str, label: str, load: str) -> list[Row]:
        found = []
        for name, values in self.samples.items():
            if not values:
                continue
            peak, median = max(values), statistics.median(values)
            found.append(row(
                section, f"RSS {name} ({label})", events=len(values),
                seconds=len(values) * SAMPLE_SECONDS, aim=f"< {RSS_AIM_MB:.0f} MB",
                met=peak < RSS_AIM_MB,
                note=(f"resident size under {load}: max {peak:.0f} MB, median {median:.0f} MB,"
                      f" first {values[0]:.0f} MB ({len(values)} samples)"),
            ) | {"rss_max_mb": round(peak, 1), "rss_median_mb": round(median, 1)})  # fmt: skip
        return found


# ---------------------------------------------------------------------------------------
# Open-loop load and latencies
# ---------------------------------------------------------------------------------------


@dataclass
class Latencies:
    """Due times and first sightings of the events of one load, by index."""

    load: Load
    due: list[float] = field(default_factory=list)
    seen: dict[int, float] = field(default_factory=dict)
    late_sends_ms: float = 0.0  # how far the generator itself fell behind, at worst
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def see(self, index: int, at: float) -> None:
        self.seen.setdefault(index, at)
        if len(self.seen) >= self.load.count:
            self.complete.set()

    def counted(self, indexes: Sequence[int] | None = None) -> list[float]:
        """Latencies (ms) of the counted events (or of `indexes`); unseen ones are inf."""
        chosen = range(self.load.first_counted, len(self.due)) if indexes is None else indexes
        return [
            (self.seen[i] - self.due[i]) * 1000 if i in self.seen else math.inf
            for i in chosen
            if i >= self.load.first_counted
        ]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_row(
    name: str, latencies: Sequence[float], load: Load, aim_ms: float | None, note: str
) -> Row:
    if not latencies:
        raise BenchFailure(f"{name}: nothing counted")
    p50, p99, worst = percentile(latencies, 0.5), percentile(latencies, 0.99), max(latencies)
    lost = sum(1 for v in latencies if math.isinf(v))
    seen = [v for v in latencies if not math.isinf(v)]
    unseen = (f", {lost} never seen (no progress for {load.stall:.0f} s or {load.cap:.0f} s"
              " after the last was due)" + (f"; of the {len(seen)} seen: p50 "
              f"{percentile(seen, 0.5):.1f} ms, p99 {percentile(seen, 0.99):.1f} ms"
              if seen else "")) if lost else ""  # fmt: skip
    text = (f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms at a steady "
            f"{load.rate:,.0f}/s{unseen}; {note}")  # fmt: skip
    aim = None if aim_ms is None else f"p99 < {aim_ms:,.0f} ms"
    return row(
        SECTION, name, events=len(latencies), seconds=len(latencies) / load.rate, aim=aim,
        met=None if aim_ms is None else p99 < aim_ms, note=text,
    ) | {"rate_per_s": load.rate, "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
         "max_ms": round(worst, 2), "lost": lost}  # fmt: skip


async def paced_send(
    producer: AIOKafkaProducer,
    records: Sequence[OutgoingRecord],
    latencies: Latencies,
    on_sent: Callable[[int], None] = lambda i: None,
) -> None:
    """Each record at its due time (open loop); waits for the broker's acknowledgements
    only at the end (a failed send fails the run)."""
    rate = latencies.load.rate
    acks: list[asyncio.Future[Any]] = []
    started = time.perf_counter()
    latencies.due[:] = [started + i / rate for i in range(len(records))]
    sent = 0
    while sent < len(records):
        now = time.perf_counter()
        due = min(len(records), int((now - started) * rate) + 1)
        if sent < due:
            latencies.late_sends_ms = max(
                latencies.late_sends_ms, (now - latencies.due[sent]) * 1000
            )
        while sent < due:
            r = records[sent]
            acks.append(
                await producer.send(r.topic, r.value, key=r.key.encode(), headers=r.headers)
            )
            on_sent(sent)
            sent += 1
        if sent < len(records):
            await asyncio.sleep(max(0.0, latencies.due[sent] - time.perf_counter()))
    await asyncio.gather(*acks)


async def until_seen(latencies: Latencies) -> None:
    """Until every event was seen, or (once the first was seen) nothing new was seen for
    `stall` seconds, or `cap` seconds after the last one was due."""
    give_up = latencies.due[-1] + latencies.load.cap
    seen, progress_at = len(latencies.seen), time.perf_counter()
    while not latencies.complete.is_set():
        now = time.perf_counter()
        if len(latencies.seen) > seen:
            seen, progress_at = len(latencies.seen), now
        stalled_at = progress_at + latencies.load.stall if seen else give_up
        left = min(give_up, stalled_at) - now
        if left <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(latencies.complete.wait(), min(left, 1.0))


def records(messages: Sequence[Contract], prefix: str, source: str) -> list[OutgoingRecord]:
    """CloudEvents records as the owning system publishes them (servicekit.testing.publish)."""
    found = []
    for message in messages:
        ce = encode(message, source)
        found.append(OutgoingRecord(prefix + topic_of(message), ce.subject or ce.id, ce.data,
                                    ce.headers()))  # fmt: skip
    return found


async def publish(producer: AIOKafkaProducer, messages: Sequence[Contract], prefix: str,
                  source: str) -> None:  # fmt: skip
    await publish_all(producer, records(messages, prefix, source))


async def until(check: Callable[[], Any], what: str, within: float = SETUP_DEADLINE) -> None:
    """Setup waits (not timed): poll the coroutine `check` until it is truthy."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise BenchFailure(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def count(dsn: str, schema: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------


def _registered(customer: str, at: datetime) -> list[Contract]:
    common = {"occurred_at": at, "customer_ids": (customer,), "customer_id": customer}
    return [
        CustomerRegistered(
            event_id=uuid.uuid4(), aggregate_id=customer, aggregate_version=1,
            first_name="Erika", last_name="Mustermann", birth_date=date(1980, 5, 17),
            address=PostalAddress(recipient="Erika Mustermann", street="Heidestraße 17",
                                  postal_code="51147", city="Köln"),
            email=f"{customer}@bench.example.org", **common,
        ),
        AccountActivated(event_id=uuid.uuid4(), aggregate_id=customer, aggregate_version=2,
                         **common),
    ]  # fmt: skip


def _policy(customer: str, at: datetime) -> PolicyIssuedUpstream:
    return PolicyIssuedUpstream(
        message_id=f"pa-{uuid.uuid4().hex}", source_system="policy-admin", occurred_at=at,
        policy_number=f"HR-{customer.upper()}", product_line=ProductLine.HOUSEHOLD_CONTENTS,
        carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG, policyholder_ids=(customer,),
        start_date=at.date() - timedelta(days=1), tariff="Hausrat Komfort",
        annual_premium_cents=14_460,
    )  # fmt: skip


def _payment(customer: str, payment_id: str, at: datetime) -> PremiumPaidUpstream:
    return PremiumPaidUpstream(
        message_id=f"co-{payment_id}", source_system="collections", occurred_at=at,
        policy_number=f"HR-{customer.upper()}", payment_id=payment_id, amount_cents=12_050,
    )  # fmt: skip


def _premium_paid_id(payment: PremiumPaidUpstream) -> str:
    """The id of the PremiumPaid contracts records for the payment (CT-1: derived from the
    upstream message alone), the id of loyalty's fact of it."""
    return str(upstream_event_ids(payment)(event_seed(PremiumPaid)))


def _status_changed(customer: str, i: int, at: datetime) -> ClaimStatusChanged:
    return ClaimStatusChanged(
        event_id=uuid.uuid4(), aggregate_id=f"claim-{customer}", aggregate_version=2,
        occurred_at=at, customer_ids=(customer,), claim_id=f"claim-{customer}",
        claim_number=f"SCH-2026-{i:06d}", customer_id=customer, old_status=ClaimStatus.IN_REVIEW,
        new_status=ClaimStatus.APPROVED, expected_completion_date=date(2026, 12, 31),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# PremiumPaid -> statement
# ---------------------------------------------------------------------------------------


async def _premium_customers(services: Services, dsn: str, producer: AIOKafkaProducer,
                             n: int) -> list[str]:  # fmt: skip
    """Registered, activated, enrolled customers, each the holder of one policy."""
    salt = uuid.uuid4().hex[:8]
    customers = [f"bench-{salt}-{i}" for i in range(n)]
    now = datetime.now(UTC)
    await publish(producer, [m for c in customers for m in _registered(c, now)],
                  services.prefix, "/identity")  # fmt: skip
    await publish(producer, [_policy(c, now) for c in customers], services.prefix, "/policy-admin")
    loyalty = services.urls["loyalty"]
    async with httpx.AsyncClient(base_url=loyalty, timeout=30) as http:

        async def enrol(customer: str) -> None:
            headers = {"Authorization": f"Bearer {services.token(customer)}"}
            deadline = time.monotonic() + SETUP_DEADLINE
            while True:
                try:
                    response = await http.post("/loyalty/enrolment", headers=headers)
                except httpx.TransportError:  # a kept-alive connection the server closed
                    response = None
                if response is not None and response.status_code in (201, 409):
                    return
                if time.monotonic() > deadline or (
                    response is not None and response.status_code != 422
                ):
                    answer = "no answer" if response is None else response.text[:300]
                    raise BenchFailure(f"enrolment: {answer}")
                await asyncio.sleep(0.2)  # identity's events have not reached loyalty yet

        for start in range(0, n, 20):
            await asyncio.gather(*(enrol(c) for c in customers[start : start + 20]))
    schema = services.schema("loyalty")
    await until(lambda: _policies_known(dsn, schema, customers), "loyalty to know the policies")
    return customers


async def _policies_known(dsn: str, schema: str, customers: list[str]) -> bool:
    known = await count(dsn, schema, "SELECT count(DISTINCT customer_id) FROM facts WHERE"
                        " customer_id = ANY($1::text[]) AND fact_type = 'PolicyIssued'",
                        customers)  # fmt: skip
    return known >= len(customers)


async def _watch_facts(pool: asyncpg.Pool, outstanding: dict[str, tuple[str, int]],
                       latencies: Latencies, seen: Callable[[int], None]) -> None:  # fmt: skip
    """Polls loyalty's facts for the outstanding payments (the PremiumPaid's event id ->
    customer, index): primary-key lookups, so the observer's cost grows with the payments
    in flight, not with the facts stored."""
    while True:
        if outstanding:
            event_ids = list(itertools.islice(outstanding, WATCH_AT_ONCE))  # the oldest
            customers = [outstanding[e][0] for e in event_ids]
            found = await pool.fetch(
                "SELECT f.event_id FROM facts f"
                " JOIN unnest($1::text[], $2::text[]) AS w(customer_id, event_id)"
                " USING (customer_id, event_id)",
                customers, event_ids,
            )  # fmt: skip
            at = time.perf_counter()
            for r in found:
                entry = outstanding.pop(r["event_id"], None)
                if entry is not None:
                    latencies.see(entry[1], at)
                    seen(entry[1])
        await asyncio.sleep(POLL_SECONDS)


async def _probe_statement(http: httpx.AsyncClient, token: str, payment: str, index: int,
                           probed: Latencies, deadline: float) -> None:  # fmt: skip
    """Until `GET /loyalty/statement` lists the payment as pending."""
    headers = {"Authorization": f"Bearer {token}"}
    while time.perf_counter() < deadline:
        try:
            response = await http.get("/loyalty/statement", headers=headers)
        except httpx.TransportError:  # a timeout under load: this probe is late, not the run
            continue
        if response.status_code == 200 and any(
            item.get("reason", {}).get("payment_id") == payment
            for item in response.json().get("pending", ())
        ):
            probed.see(index, time.perf_counter())
            return
        await asyncio.sleep(0.01)


_RECORDED = (
    "SELECT event_id::text AS id, payload->>'payment_id' AS payment,"
    " extract(epoch FROM recorded_at)::float8 AS recorded"
    " FROM {schema}.events WHERE event_type = $1"
)
_APPLIED = (
    "SELECT split_part(event_id, '#', 2) AS id,"
    " min(extract(epoch FROM processed_at))::float8 AS processed"
    " FROM {schema}.inbox GROUP BY 1"
)


async def _stages(
    dsn: str, bootstrap: str, services: Services, payments: Sequence[tuple[str, str]],
    latencies: Latencies, wall_at: Callable[[float], float],
) -> list[Row]:  # fmt: skip
    """Where the time goes, from the stores' own timestamps (PostgreSQL's and Kafka's clock
    are this machine's): for each counted payment, from its due time until contracts'
    transaction that recorded it began (`events.recorded_at`), the relay put it into a
    batch for the broker (the record's CreateTime, in ms), loyalty's transaction that
    applied it began (its inbox row's `processed_at`). Cumulative: the step between two
    rows' p50 is that stage's share."""
    contracts, loyalty = services.schema("contracts"), services.schema("loyalty")
    recorded_sql = _RECORDED.replace("{schema}", contracts)
    applied_sql = _APPLIED.replace("{schema}", loyalty)
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetch(recorded_sql, PremiumPaid.type_name())
        applied = {r["id"]: r["processed"] for r in await conn.fetch(applied_sql)}
    finally:
        await conn.close()
    sent = await _created(bootstrap, services.topic(REGISTRY[PremiumPaid.type_name()].topic))
    index = {payment: i for i, (_, payment) in enumerate(payments)}
    at: dict[str, dict[int, float]] = {"recorded": {}, "sent": {}, "applied": {}}
    for r in stored:
        i = index.get(r["payment"])
        if i is None:
            continue
        for stage, value in (("recorded", r["recorded"]), ("sent", sent.get(r["id"])),
                             ("applied", applied.get(r["id"]))):  # fmt: skip
            if value is not None:
                at[stage][i] = value
    names = {
        "recorded": "contracts' transaction began (events.recorded_at)",
        "sent": "relay sent it (the record's Kafka CreateTime)",
        "applied": "loyalty's transaction began (inbox.processed_at)",
    }
    first, end = latencies.load.first_counted, len(latencies.due)
    return [
        latency_row(f"PremiumPaid stage: due -> {names[stage]}", [
            (found[i] - wall_at(latencies.due[i])) * 1000 if i in found else math.inf
            for i in range(first, end)
        ], latencies.load, None, "cumulative from the due time; inf: no such timestamp")
        for stage, found in at.items()
    ]  # fmt: skip


async def _created(bootstrap: str, topic: str) -> dict[str, float]:
    """The first CreateTime (epoch seconds) of each event id published on `topic`."""
    created: dict[str, float] = {}
    for record in await read_whole_topic(bootstrap, topic):
        event_id = header(record, "ce_id")
        if event_id is not None:
            created.setdefault(event_id, record.timestamp / 1000)
    return created


async def premium_to_statement(services: Services, dsn: str, bootstrap: str, load: Load,
                               customers_n: int, rss: RssSampler) -> list[Row]:  # fmt: skip
    producer = reliable_producer(bootstrap, unique("bench-e2e-collections"))
    await producer.start()
    try:
        say(f"e2e: {customers_n} customers enrolled with a policy each")
        customers = await _premium_customers(services, dsn, producer, customers_n)
        salt = uuid.uuid4().hex[:8]
        now = datetime.now(UTC)
        payments = [(customers[i % len(customers)], f"pay-{salt}-{i}") for i in range(load.count)]
        upstream = [_payment(c, p, now) for c, p in payments]
        built = records(upstream, services.prefix, "/collections")
        event_ids = [_premium_paid_id(message) for message in upstream]
        latencies, probed = Latencies(load), Latencies(load)
        outstanding: dict[str, tuple[str, int]] = {}
        tokens = {c: services.token(c) for c in customers}
        probes: list[asyncio.Task[None]] = []
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=2, server_settings={"search_path": services.schema("loyalty")}
        )
        async with pool, httpx.AsyncClient(base_url=services.urls["loyalty"], timeout=30) as http:

            def sent(i: int) -> None:
                outstanding[event_ids[i]] = (payments[i][0], i)

            def seen(i: int) -> None:
                if i % PROBE_EVERY == 0:
                    probes.append(asyncio.create_task(_probe_statement(
                        http, tokens[payments[i][0]], payments[i][1], i, probed,
                        latencies.due[i] + load.cap)))  # fmt: skip

            watcher = asyncio.create_task(_watch_facts(pool, outstanding, latencies, seen))
            say(f"e2e: PremiumPaid at {load.rate:,.0f}/s for {load.warmup + load.seconds:.0f} s")
            try:
                measured = asyncio.create_task(_sample_after(rss, load.warmup, load.seconds))
                probed.due = latencies.due  # the same due times (set as sending starts)
                wall0, perf0 = time.time(), time.perf_counter()
                await paced_send(producer, built, latencies, sent)
                await until_seen(latencies)
                await asyncio.gather(*probes)
                await measured
                stages = await _stages(dsn, bootstrap, services, payments, latencies,
                                       lambda perf: wall0 + (perf - perf0))  # fmt: skip
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
    finally:
        await producer.stop()
    path = "collections -> Kafka -> contracts -> outbox -> Kafka -> loyalty"
    probe_indexes = list(range(0, load.count, PROBE_EVERY))
    return [
        latency_row("PremiumPaid -> statement pending", latencies.counted(), load,
                    PREMIUM_AIM_MS, f"{path} facts (polled every {POLL_SECONDS * 1000:.0f} ms);"
                    f" generator at worst {latencies.late_sends_ms:.1f} ms late"),
        latency_row("PremiumPaid -> statement pending, via GET /loyalty/statement",
                    probed.counted(probe_indexes), load, PREMIUM_AIM_MS,
                    f"every {PROBE_EVERY}th payment, statement polled every 10 ms once its"
                    " fact was seen"),
        *stages,
    ]  # fmt: skip


async def _sample_after(rss: RssSampler, warmup: float, seconds: float) -> None:
    await asyncio.sleep(warmup)
    async with rss.sampling():
        await asyncio.sleep(seconds)


# ---------------------------------------------------------------------------------------
# ClaimStatusChanged -> e-mail on the SMTP sink
# ---------------------------------------------------------------------------------------


class Sink:
    """An SMTP sink that notes when it accepted a message for each recipient."""

    def __init__(self) -> None:
        self.on_accept: Callable[[str, float], None] = lambda rcpt, at: None
        self.accepted = 0

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        at = time.perf_counter()
        self.accepted += 1
        for rcpt in envelope.rcpt_tos:
            self.on_accept(rcpt, at)
        return "250 2.0.0 Ok: queued"


class _NoDelaySMTP(SMTP):
    """Nagle off (as a real MTA's single-write replies): see bench/notifier_email.py."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


@contextlib.asynccontextmanager
async def smtp_sink() -> AsyncIterator[tuple[Sink, int]]:
    sink = Sink()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.get_running_loop().create_server(
        lambda: _NoDelaySMTP(sink, hostname="localhost"), sock=sock
    )
    try:
        yield sink, int(sock.getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def _drained(sink: Sink, total: int) -> None:
    while sink.accepted < total:  # noqa: ASYNC110 - the sink's count, polled
        await asyncio.sleep(0.1)


def _seeing(latencies: Latencies, index: dict[str, int]) -> Callable[[str, float], None]:
    def accepted(recipient: str, at: float) -> None:
        if recipient in index:
            latencies.see(index[recipient], at)

    return accepted


async def claim_status_to_email(services: Services, dsn: str, bootstrap: str,
                                loads: Sequence[Load], sink: Sink,
                                rss: RssSampler) -> list[Row]:  # fmt: skip
    producer = reliable_producer(bootstrap, unique("bench-e2e-claims"))
    await producer.start()
    rows = []
    try:
        salt = uuid.uuid4().hex[:8]
        now = datetime.now(UTC)
        customers = [[f"bench-{salt}-{n}-{i}" for i in range(load.count)]
                     for n, load in enumerate(loads)]  # fmt: skip
        total = sum(len(c) for c in customers)
        say(f"e2e: {total} customers registered with the notifier")
        await publish(producer, [_registered(c, now)[0] for cs in customers for c in cs],
                      services.prefix, "/identity")  # fmt: skip
        schema = services.schema("notifier")

        async def contacts() -> bool:
            known = await count(dsn, schema, "SELECT count(*) FROM contacts WHERE view IS NOT"
                                " NULL AND customer_id LIKE $1", f"bench-{salt}-%")  # fmt: skip
            return known >= total

        await until(contacts, "the notifier to know the customers")
        for load, group in zip(loads, customers, strict=True):
            latencies = Latencies(load)
            index = {f"{c}@bench.example.org": i for i, c in enumerate(group)}
            sink.on_accept, sink.accepted = _seeing(latencies, index), 0
            built = records([_status_changed(c, i, now) for i, c in enumerate(group)],
                            services.prefix, "/claims")  # fmt: skip
            say(f"e2e: ClaimStatusChanged at {load.rate:,.0f}/s for "
                f"{load.warmup + load.seconds:.0f} s")  # fmt: skip
            measured = asyncio.create_task(_sample_after(rss, load.warmup, load.seconds))
            await paced_send(producer, built, latencies)
            await until_seen(latencies)
            await measured
            # The next rate starts on an empty pipeline: the stragglers of this one (if any
            # are still coming) are waited for, uncounted, up to `cap`.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_drained(sink, load.count), load.cap)
            aim = CLAIM_AIM_MS if load.rate >= 100 else None
            rows.append(latency_row(
                f"ClaimStatusChanged -> e-mail at {load.rate:,.0f}/s", latencies.counted(), load,
                aim, "claims topic -> notifier (plan, render, delivery, worker) -> SMTP sink"
                f" accepted; generator at worst {latencies.late_sends_ms:.1f} ms late",
            ))  # fmt: skip
    finally:
        await producer.stop()
    return rows


# ---------------------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------------------


async def premium_only(bootstrap: str, dsn: str, load: Load, customers: int) -> list[Row]:
    """The PremiumPaid chain alone (contracts and loyalty only), for iterating on it:
    `python -m bench.e2e --premium-only [--rate R] [--seconds S] [--customers N]`."""
    say("e2e: starting contracts, loyalty")
    async with running(("contracts", "loyalty"), dsn, bootstrap) as services:
        rss = RssSampler(services)
        rows = await premium_to_statement(services, dsn, bootstrap, load, customers, rss)
    return rows + rss.rows(SECTION, "premium load", f"PremiumPaid at {load.rate:,.0f}/s")


async def run(bootstrap: str, dsn: str, quick: bool = False) -> list[Row]:
    plan = QUICK if quick else FULL
    premium, claim100, claim50 = plan.premium, plan.claim100, plan.claim50
    async with smtp_sink() as (sink, smtp_port):
        notifier = {
            "PORTAL_SMTP_HOST": "127.0.0.1", "PORTAL_SMTP_PORT": str(smtp_port),
            "PORTAL_SMTP_SECURITY": "none",
        }  # fmt: skip
        say("e2e: starting contracts, loyalty, notifier")
        async with running(("contracts", "loyalty", "notifier"), dsn, bootstrap,
                           {"notifier": notifier}) as services:  # fmt: skip
            premium_rss, claim_rss = RssSampler(services), RssSampler(services)
            rows = await premium_to_statement(services, dsn, bootstrap, premium, plan.customers,
                                              premium_rss)  # fmt: skip
            rows += await claim_status_to_email(services, dsn, bootstrap, (claim100, claim50),
                                                sink, claim_rss)  # fmt: skip
    rows += premium_rss.rows(SECTION, "premium load", f"PremiumPaid at {premium.rate:,.0f}/s")
    rows += claim_rss.rows(SECTION, "claim-status load", f"ClaimStatusChanged at "
                           f"{claim100.rate:,.0f}/s and {claim50.rate:,.0f}/s")  # fmt: skip
    return rows


def _main(argv: Sequence[str]) -> list[Row]:
    """`python -m bench.e2e [--quick]`: the section as `python -m bench` runs it;
    `--premium-only` the PremiumPaid chain alone, at `--rate`/`--seconds`/`--customers`
    (defaults: the quick run's; a warm-up of 2 s is not counted)."""
    import argparse

    from bench.__main__ import env

    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=_main.__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--premium-only", action="store_true")
    parser.add_argument("--rate", type=float, default=QUICK.premium.rate)
    parser.add_argument("--seconds", type=float, default=QUICK.premium.seconds)
    parser.add_argument("--customers", type=int, default=QUICK.customers)
    args = parser.parse_args(argv)
    bootstrap, dsn = env("PORTAL_KAFKA_BOOTSTRAP"), env("PORTAL_DATABASE_URL")
    if not args.premium_only:
        return asyncio.run(run(bootstrap, dsn, quick=args.quick))
    q = QUICK.premium
    load = Load(args.rate, q.warmup, args.seconds, q.stall, q.cap)
    return asyncio.run(premium_only(bootstrap, dsn, load, args.customers))


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(_main(sys.argv[1:]))
