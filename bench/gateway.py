"""The gateway's cost (GW-1) and the price of a login (ID-2/ID-4), in one run.

- Authenticated read: `GET /contracts` with an access token that identity issued, sent
  directly to the contracts service and the same read through the gateway (which verifies
  the token against identity's key set, counts the rate limits in Redis and streams the
  answer). Real processes (`identity`, `contracts`, `gateway serve`) on this machine, one
  client with `CONCURRENCY` connections. Aim: the gateway keeps >= 60 % of the direct
  throughput and adds < 5 ms to p99.
- Logins per second: `POST /identity/login` (argon2id verify with identity's configured
  parameters, a session and refresh token written, tokens signed) next to the raw argon2id
  verify rate of the same parameters in this process (one thread, and two).

`async def run(bootstrap, dsn) -> list[Row]`; alone: `python -m bench.gateway`.
Needs PORTAL_REDIS_URL too (`make bench` / `deploy/local/platform env` set it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import argon2
import httpx
from gateway.adapters.upstreams import skip_sniffio_lookups
from servicekit.db import drop_schema
from servicekit.testing import unique

from bench.common import Row, row, say

SECTION = "gateway"
BIN = Path(sys.executable).parent
CONCURRENCY = 16


@dataclass(frozen=True)
class Counts:
    reads: int = 3_000
    warmup: int = 300
    latency_reads: int = 500  # one at a time: the latency the gateway adds, without queueing
    logins: int = 60


QUICK = Counts(reads=600, warmup=100, latency_reads=100, logins=12)
LOGIN_CONCURRENCY = 4
RAW_VERIFY_SECONDS = 3.0
PASSWORD = "Wolkenkratzer-Segelboot-Tangente-42"  # noqa: S105 - a test customer's
THROUGHPUT_AIM = 0.60
ADDED_P99_AIM_MS = 5.0
SERVICES = ("identity", "contracts", "gateway")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


@asynccontextmanager
async def _services(dsn: str, bootstrap: str) -> AsyncIterator[dict[str, str]]:
    """identity, contracts and the gateway as processes, in schemas/topics of their own."""
    prefix = unique("bench-gw") + "."
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    ports = {name: _free_port() for name in SERVICES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    schemas = {name: f"{prefix.rstrip('.').replace('-', '_')}_{name}" for name in SERVICES}
    common = {k: v for k, v in os.environ.items() if k not in {"PORTAL_JWKS"}} | {
        "PORTAL_DATABASE_URL": dsn, "PORTAL_KAFKA_BOOTSTRAP": bootstrap,
        "PORTAL_TOPIC_PREFIX": prefix, "PORTAL_LOG_LEVEL": "WARNING",
        "PORTAL_JWKS_URL": urls["identity"] + "/.well-known/jwks.json",
    }  # fmt: skip
    own = {
        "identity": {"PORTAL_DATA_KEY": _key(), "PORTAL_CODE_PEPPER": _key()},
        "contracts": {},
        "gateway": {
            "PORTAL_UPSTREAMS": json.dumps(
                {n: {"url": urls[n]} for n in ("identity", "contracts")}
            ),
            "PORTAL_ROUTES": json.dumps({"/identity": "identity", "/contracts": "contracts",
                                         "/.well-known/jwks.json": "identity"}),
            "PORTAL_RATE_LIMIT_PER_ADDRESS": "10000000/minute",
            "PORTAL_RATE_LIMIT_PER_ACCOUNT": "10000000/minute",
            "PORTAL_RATE_LIMIT_PUBLIC_PER_ADDRESS": "10000000/minute",
        },
    }  # fmt: skip
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in SERVICES:
            env = common | own[name] | {
                "PORTAL_HTTP_PORT": str(ports[name]), "PORTAL_DATABASE_SCHEMA": schemas[name],
                "PORTAL_INSTANCE_ID": prefix + name,
            }  # fmt: skip
            processes[name] = _spawn(name, env, workdir / f"{name}.log")
        async with httpx.AsyncClient(timeout=2) as probe:
            for name in SERVICES:
                await _ready(probe, urls[name], processes[name], workdir / f"{name}.log")
        yield urls
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for name in ("identity", "contracts"):
            await drop_schema(dsn, schemas[name])


def _spawn(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our own console scripts
            [str(BIN / name), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _ready(
    probe: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 360  # a loaded machine starts three processes slowly
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{_tail(log)}")
        try:
            if (await probe.get(url + "/health/ready")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready:\n{_tail(log)}")


async def _customer(identity: str) -> str:
    """A registered customer's username."""
    username = "bench" + secrets.token_hex(5)
    async with httpx.AsyncClient(base_url=identity, timeout=30) as http:
        registered = await http.post("/identity/registrations", json={
            "username": username, "password": PASSWORD, "first_name": "Erika",
            "last_name": "Mustermann", "birth_date": "1980-05-17",
            "email": f"{username}@bench.example.org",
            "address": {"recipient": "Erika Mustermann", "street": "Heidestraße 17",
                        "postal_code": "51147", "city": "Köln"},
        })  # fmt: skip
        assert registered.status_code == 202, registered.text
    return username


async def _renew(auth: dict[str, str], identity: str, username: str) -> None:
    """A new token in `auth` every two minutes, well before the last one expires."""
    while True:
        await asyncio.sleep(120)
        auth["Authorization"] = f"Bearer {await _token(identity, username)}"


async def _token(identity: str, username: str) -> str:
    """An access token that identity issued the customer just now."""
    async with httpx.AsyncClient(base_url=identity, timeout=30) as http:
        tokens = await http.post(
            "/identity/login", json={"username": username, "password": PASSWORD}
        )
        assert tokens.status_code == 200, tokens.text
        return str(tokens.json()["access_token"])


async def _load(
    count: int, concurrency: int, call: Callable[[], Awaitable[httpx.Response]]
) -> tuple[float, list[float]]:
    """`count` calls from `concurrency` workers; (seconds, latencies in ms)."""
    latencies: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            response = await call()
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _raw_verify_rate(threads: int) -> tuple[int, float]:
    """argon2id verifies of identity's configured parameters: (count, seconds)."""
    from identity.config import IdentitySettings

    defaults = IdentitySettings.model_fields
    hasher = argon2.PasswordHasher(
        time_cost=int(defaults["argon2_time_cost"].default),
        memory_cost=int(defaults["argon2_memory_kib"].default),
        parallelism=int(defaults["argon2_parallelism"].default),
        type=argon2.Type.ID,
    )
    hashed = hasher.hash(PASSWORD)
    deadline = time.perf_counter() + RAW_VERIFY_SECONDS

    def verify_until_deadline() -> int:
        done = 0
        while time.perf_counter() < deadline:
            hasher.verify(hashed, PASSWORD)
            done += 1
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        count = sum(pool.map(lambda _: verify_until_deadline(), range(threads)))
    return count, time.perf_counter() - started


def _argon2_parameters() -> str:
    from identity.config import IdentitySettings

    f = IdentitySettings.model_fields
    return (f"argon2id m={f['argon2_memory_kib'].default} KiB, t={f['argon2_time_cost'].default},"
            f" p={f['argon2_parallelism'].default}")  # fmt: skip


async def run(bootstrap: str, dsn: str, quick: bool = False) -> list[Row]:
    counts = QUICK if quick else Counts()
    # The load client is httpx too: without this each of its requests would search
    # sys.path for sniffio (see gateway.adapters.upstreams) and the figures would measure it.
    skip_sniffio_lookups()
    rows: list[Row] = []
    async with _services(dsn, bootstrap) as urls:
        username = await _customer(urls["identity"])
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        figures: dict[str, tuple[float, list[float]]] = {}
        latencies: dict[str, list[float]] = {}
        for name in ("contracts", "gateway"):
            # Access tokens live minutes, and on a loaded machine a side takes longer.
            auth = {"Authorization": f"Bearer {await _token(urls['identity'], username)}"}
            renewing = asyncio.create_task(_renew(auth, urls["identity"], username))
            async with httpx.AsyncClient(base_url=urls[name], limits=limits, timeout=30) as http:

                def read(
                    http: httpx.AsyncClient = http, auth: dict[str, str] = auth
                ) -> Awaitable[httpx.Response]:
                    return http.get("/contracts", headers=auth)

                await _load(counts.warmup, CONCURRENCY, read)
                say(f"gateway: {counts.latency_reads} reads one at a time, {counts.reads} reads "
                    f"{CONCURRENCY} at a time via {name}")  # fmt: skip
                latencies[name] = (await _load(counts.latency_reads, 1, read))[1]
                figures[name] = await _load(counts.reads, CONCURRENCY, read)
            renewing.cancel()
        direct_s, direct = figures["contracts"]
        gw_s, via = figures["gateway"]
        one_direct, one_via = latencies["contracts"], latencies["gateway"]
        added_p99 = _percentile(one_via, 0.99) - _percentile(one_direct, 0.99)
        ratio = direct_s / gw_s
        note = (f"GET /contracts; throughput with {CONCURRENCY} connections (p50/p99 ms direct "
                f"{statistics.median(direct):.1f}/{_percentile(direct, 0.99):.1f}, via gateway "
                f"{statistics.median(via):.1f}/{_percentile(via, 0.99):.1f}); one at a time "
                f"p50/p99 ms direct {statistics.median(one_direct):.1f}/"
                f"{_percentile(one_direct, 0.99):.1f}, via gateway "
                f"{statistics.median(one_via):.1f}/{_percentile(one_via, 0.99):.1f}: "
                f"added p50 {statistics.median(one_via) - statistics.median(one_direct):.1f} ms, "
                f"p99 {added_p99:.1f} ms (aim < {ADDED_P99_AIM_MS:.0f} ms)")  # fmt: skip
        rows.append(row(
            SECTION, "authenticated read via gateway", events=counts.reads, seconds=gw_s,
            baseline="same read direct", baseline_events=counts.reads, baseline_seconds=direct_s,
            aim=f">= {THROUGHPUT_AIM:.2f} x direct, < {ADDED_P99_AIM_MS:.0f} ms p99 added",
            met=ratio >= THROUGHPUT_AIM and added_p99 < ADDED_P99_AIM_MS, note=note,
        ) | {"p50_ms": round(statistics.median(one_via), 2),
             "p99_ms": round(_percentile(one_via, 0.99), 2),
             "direct_p50_ms": round(statistics.median(one_direct), 2),
             "direct_p99_ms": round(_percentile(one_direct, 0.99), 2),
             "added_p99_ms": round(added_p99, 2)})  # fmt: skip

        say(f"gateway: {counts.logins} logins")
        async with httpx.AsyncClient(base_url=urls["identity"], timeout=60) as http:
            body = {"username": username, "password": PASSWORD}

            def login() -> Awaitable[httpx.Response]:
                return http.post("/identity/login", json=body)

            login_s, login_ms = await _load(counts.logins, LOGIN_CONCURRENCY, login)
    say("gateway: raw argon2id verifies")
    one_count, one_s = await asyncio.to_thread(_raw_verify_rate, 1)
    two_count, two_s = await asyncio.to_thread(_raw_verify_rate, 2)
    parameters = _argon2_parameters()
    rows.append(row(
        SECTION, "logins (POST /identity/login)", events=counts.logins, seconds=login_s,
        baseline="raw argon2id verify, 2 threads", baseline_events=two_count,
        baseline_seconds=two_s,
        note=(f"{parameters}; {LOGIN_CONCURRENCY} concurrent logins, p50/p99 "
              f"{statistics.median(login_ms):.0f}/{_percentile(login_ms, 0.99):.0f} ms; raw "
              f"verify 1 thread {one_count / one_s:.1f}/s"),
    ))  # fmt: skip
    rows.append(row(SECTION, "raw argon2id verify, 1 thread", events=one_count, seconds=one_s,
                    note=parameters))  # fmt: skip
    return rows


if __name__ == "__main__":
    from bench.__main__ import env, print_table

    print_table(asyncio.run(run(env("PORTAL_KAFKA_BOOTSTRAP"), env("PORTAL_DATABASE_URL"))))
