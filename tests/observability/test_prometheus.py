"""OPS-2: a real Prometheus, started by the launcher, scrapes a running service (its targets
API shows it up), and the production lag rule - with a short `for:` in a test-only copy -
fires for a deliberately stuck consumer group on the real broker. Every service that
`make run` starts (scripts/run-platform), run as a real process, is scraped and up, and
each one with a stream reports the consumer lag of its groups."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml  # type: ignore[import-untyped]
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from e2e_harness import eventually
from readiness import Startup, wait_ready
from servicekit.auth import ServiceCredentials, generate_signing_key
from servicekit.db import drop_schema
from servicekit.http import create_app
from servicekit.kafka import ensure_topics, reliable_producer
from servicekit.lag import LagMonitor
from servicekit.testing import required_env, unique

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "deploy/local/platform"
RULES = REPO / "deploy/prometheus/rules/portal.yml"
RUN_PLATFORM = REPO / "scripts/run-platform"
BIN = Path(sys.executable).parent
# The services with an event stream (and so a consumer lag to report).
STREAMING = {"identity", "contracts", "loyalty", "notifier", "claims", "documents"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launcher(command: str, *args: str, env: dict[str, str]) -> None:
    subprocess.run([str(LAUNCHER), command, *args], env=env, check=True, timeout=600)


def rules_for_the_test(directory: Path) -> Path:
    """The production rule file, with ConsumerLagGrowing's `for:` shortened: its
    expression (the 10-minute window included) is the one that runs in production."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "ConsumerLagGrowing":
                rule["for"] = "3s"
    path = directory / "portal-test.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


class MetricsServer:
    """This test process as a scrape target: servicekit's app and its /metrics, with a lag
    monitor of the stuck group running in the server's event loop."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.port = free_port()
        self._monitor = LagMonitor(bootstrap, {group: [topic]}, client_id=unique("lag"))
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        config = uvicorn.Config(
            create_app("stuck-consumer"), host="127.0.0.1", port=self.port, log_config=None
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        await self._monitor.run(self._stop, every=0.5)
        server.should_exit = True
        await serving

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    env = os.environ | {
        "PORTAL_PROMETHEUS_PORT": str(port),
        "PORTAL_PROMETHEUS_DIR": str(tmp_path / "prometheus"),
        "PORTAL_PROMETHEUS_RULES": str(rules_for_the_test(tmp_path)),
        # Also the scrape timeout (Prometheus caps it at the interval): 5 s lets a target
        # on a starved machine - the stuck-consumer exporter is a thread of this test
        # process - still answer; at 1 s its scrapes timed out at load 25 and the lag
        # series had no samples to grow.
        "PORTAL_PROMETHEUS_SCRAPE_INTERVAL": "5s",
    }
    launcher("start-prometheus", env=env)
    try:
        yield f"http://127.0.0.1:{port}", env
    finally:
        launcher("stop-prometheus", env=env)


async def stuck_group(bootstrap: str, group: str, topic: str) -> None:
    """A group that committed offset 0 of its one partition and reads no more."""
    await ensure_topics(bootstrap, [topic], partitions=1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(0, "")})
    finally:
        await consumer.stop()


async def publish_some(bootstrap: str, topic: str, count: int) -> None:
    producer = reliable_producer(bootstrap, unique("stuck-producer"))
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(topic, f"event {n}".encode(), key=b"k")
    finally:
        await producer.stop()


def alerts(base: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/api/v1/alerts", timeout=5).json()
    return list(answer["data"]["alerts"])


def targets(base: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/api/v1/targets", timeout=5).json()
    return list(answer["data"]["activeTargets"])


# The waits are hang guards: on a loaded machine Prometheus' scrapes and rule evaluations
# (every 5 s here) fall behind - an alert once took more than 90 s.
@pytest.mark.timeout(900)
def test_ops2_prometheus_scrapes_a_service_and_alerts_on_a_stuck_consumer(
    prometheus: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, env = prometheus
    bootstrap = required_env("PORTAL_KAFKA_BOOTSTRAP")
    prefix = unique("obs") + "."
    group, topic = f"{prefix}stuck.group", f"{prefix}stuck.topic"
    asyncio.run(stuck_group(bootstrap, group, topic))
    workdir = tmp_path / "services"
    workdir.mkdir()
    with (
        every_service(["loyalty"], workdir, base) as ports,
        MetricsServer(bootstrap, group, topic) as stuck,
    ):
        loyalty_port = ports["loyalty"]
        launcher("prometheus-targets", f"loyalty:{loyalty_port}",
                 f"stuck-consumer:{stuck.port}", env=env)  # fmt: skip

        def service_up() -> list[dict[str, Any]]:
            return [
                t for t in targets(base)
                if t["labels"].get("service") == "loyalty" and t["health"] == "up"
            ]  # fmt: skip

        (loyalty,) = eventually(service_up, within=240)
        assert loyalty["scrapeUrl"] == f"http://127.0.0.1:{loyalty_port}/metrics"

        def lag_alert_firing() -> list[dict[str, Any]]:
            asyncio.run(publish_some(bootstrap, topic, 3))  # the lag keeps growing
            return [
                a for a in alerts(base)
                if a["labels"].get("alertname") == "ConsumerLagGrowing"
                and a["labels"].get("group") == group and a["state"] == "firing"
            ]  # fmt: skip

        try:
            (firing,) = eventually(lag_alert_firing, within=360, every=1)
        except AssertionError as late:
            exporter = [t for t in targets(base) if t["labels"].get("service") == "stuck-consumer"]
            lag = query(base, f'portal_consumer_lag{{group="{group}"}}')
            raise AssertionError(f"no alert; exporter target {exporter}; lag {lag}") from late
        assert float(firing["value"]) > 0
        assert firing["labels"]["severity"] == "warning"


def services_of_make_run() -> list[str]:
    """The services `make run` starts, as scripts/run-platform lists them."""
    listed = re.search(r"^services=\(([^)]*)\)", RUN_PLATFORM.read_text(), re.MULTILINE)
    assert listed is not None, "scripts/run-platform lists its services as services=(NAME:PORT ...)"
    return [entry.split(":", 1)[0] for entry in listed.group(1).split()]


def query(base: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5).json()
    return list(answer["data"]["result"])


@contextmanager
def every_service(names: list[str], workdir: Path, prometheus_url: str) -> Iterator[dict[str, int]]:
    """Each service a real process (`<name> serve`) on a port of its own, with schemas,
    topics and instance ids of this test only; yields, once all are ready, the port each
    one's /metrics answers on: its HTTP port, the gateway's metrics port (its HTTP port is
    the customers' door, which serves no metrics)."""
    prefix = unique("obsall") + "."
    schema = prefix.rstrip(".").replace("-", "_")
    _, jwks = generate_signing_key("obs")
    ports = {name: free_port() for name in names}
    scraped = ports | ({"gateway": free_port()} if "gateway" in names else {})
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    common = {
        k: v for k, v in os.environ.items() if k not in ("PORTAL_JWKS_URL", "PORTAL_TRACE_FILE")
    }
    common |= {
        "PORTAL_TOPIC_PREFIX": prefix,
        "PORTAL_JWKS": json.dumps(jwks),
        "PORTAL_SERVICE_CREDENTIALS": json.dumps(
            {"operators": ServiceCredentials.digest("op-secret-obs")}
        ),
        "PORTAL_LOG_LEVEL": "INFO",
    }
    own = {
        # Secrets of their own (random per run; there are no defaults).
        "identity": {"PORTAL_DATA_KEY": secret_key(), "PORTAL_CODE_PEPPER": secret_key()},
        "documents": {"PORTAL_MASTER_KEYS": json.dumps({"obs-1": secret_key()}),
                      "PORTAL_MASTER_KEY_ID": "obs-1"},
        "gateway": {"PORTAL_UPSTREAMS": json.dumps(
            {n: {"url": url[n]} for n in ("identity", "contracts", "loyalty", "claims",
                                          "documents") if n in url}
        ), "PORTAL_METRICS_PORT": str(scraped.get("gateway", 0))},
        "console": {
            "PORTAL_PROMETHEUS_URL": prometheus_url,
            "PORTAL_OPERATOR_SECRET": "op-secret-obs",
            "PORTAL_SERVICES": json.dumps({n: url[n] for n in names if n != "console"}),
        },
    }  # fmt: skip
    running: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: workdir / f"{name}.log" for name in names}
    try:
        for name in names:
            env = common | {
                "PORTAL_HTTP_PORT": str(ports[name]),
                "PORTAL_DATABASE_SCHEMA": f"{schema}_{name}",
                "PORTAL_INSTANCE_ID": f"{prefix}{name}",
            } | own.get(name, {})  # fmt: skip
            with logs[name].open("wb") as log:
                running[name] = subprocess.Popen(
                    [str(BIN / name), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
                )

        for name, process in running.items():
            wait_ready(Startup(name, process, url[name], logs[name]))
        yield scraped
    finally:
        for process in running.values():
            process.send_signal(signal.SIGTERM)
        for name, process in running.items():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.returncode not in (0, -signal.SIGTERM):
                sys.stderr.write(f"{name}: {logs[name].read_text()[-3000:]}\n")
        dsn = os.environ.get("PORTAL_DATABASE_URL")
        if dsn:
            for name in names:
                asyncio.run(drop_schema(dsn, f"{schema}_{name}"))


def secret_key() -> str:
    """32 random bytes, URL-safe base64 (a data key, pepper or master key)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


@pytest.mark.timeout(900)  # eight service processes start first; a busy machine is slow
def test_ops2_prometheus_scrapes_every_service_that_make_run_starts(
    prometheus: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, env = prometheus
    required_env("PORTAL_KAFKA_BOOTSTRAP")
    names = services_of_make_run()
    assert {"identity", "contracts", "loyalty", "notifier", "claims", "documents", "console",
            "gateway"} <= set(names)  # fmt: skip
    with every_service(names, tmp_path, base) as ports:
        launcher("prometheus-targets", *(f"{n}:{p}" for n, p in ports.items()), env=env)

        seen: dict[str, str] = {}

        def all_scraped() -> dict[str, str]:
            """Every target scraped at least once; each one's health (and error)."""
            found = {t["labels"].get("service"): t for t in targets(base)}
            seen.clear()
            seen.update({
                n: f"{found[n]['health']} {found[n].get('lastError', '')}".strip()
                if n in found else "absent"
                for n in names
            })  # fmt: skip
            waiting = [n for n, h in seen.items() if h in ("absent", "unknown")]
            return {} if waiting or not all(h == "up" for h in seen.values()) else dict(seen)

        try:
            health = eventually(all_scraped, within=240, every=0.5)
        except AssertionError as late:
            raise AssertionError(f"not every service up: {seen}") from late
        assert set(health) == set(names)
        scraped = {t["labels"]["service"]: t["scrapeUrl"] for t in targets(base)}
        assert scraped == {n: f"http://127.0.0.1:{p}/metrics" for n, p in ports.items()}

        # Each service with a stream measures its groups' lag (Runtime.lag_loop).
        def lag_reported() -> set[str]:
            series = query(
                base, "count by (service) (portal_consumer_lag_updated_timestamp_seconds)"
            )
            reporting = {s["metric"]["service"] for s in series}
            return reporting if STREAMING & set(names) <= reporting else set()

        reporting = eventually(lag_reported, within=240, every=1)
        assert reporting == STREAMING & set(names)

        # Claims by status (every status set) and the loyalty points' movements exist.
        def labels(promql: str, label: str) -> set[str]:
            return {s["metric"][label] for s in query(base, promql)}

        statuses = eventually(lambda: labels('portal_claims{service="claims"}', "status"))
        assert statuses == {"reported", "in_review", "documents_requested", "assessment",
                            "approved", "paid", "rejected", "closed"}  # fmt: skip
        movements = eventually(
            lambda: labels('portal_loyalty_points_total{service="loyalty"}', "movement")
        )
        assert movements == {"credited", "expired", "forfeited"}
        # The gateway counts its own requests (the readiness probes reached it).
        gateway_routes = eventually(
            lambda: labels('portal_http_requests_total{service="gateway"}', "route")
        )
        assert "/health/ready" in gateway_routes
