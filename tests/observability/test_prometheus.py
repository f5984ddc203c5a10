"""OPS-2: a real Prometheus, started by the launcher, scrapes a running service (its targets
API shows it up), and the production lag rule - with a short `for:` in a test-only copy -
fires for a deliberately stuck consumer group on the real broker."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml  # type: ignore[import-untyped]
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from e2e_harness import eventually, running_platform
from servicekit.http import create_app
from servicekit.kafka import ensure_topics, reliable_producer
from servicekit.lag import LagMonitor
from servicekit.testing import required_env, unique

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "deploy/local/platform"
RULES = REPO / "deploy/prometheus/rules/portal.yml"


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
        "PORTAL_PROMETHEUS_SCRAPE_INTERVAL": "1s",
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


def test_ops2_prometheus_scrapes_a_service_and_alerts_on_a_stuck_consumer(
    prometheus: tuple[str, dict[str, str]],
) -> None:
    base, env = prometheus
    bootstrap = required_env("PORTAL_KAFKA_BOOTSTRAP")
    prefix = unique("obs") + "."
    group, topic = f"{prefix}stuck.group", f"{prefix}stuck.topic"
    asyncio.run(stuck_group(bootstrap, group, topic))
    with (
        running_platform(("loyalty",), prefix) as platform,
        MetricsServer(bootstrap, group, topic) as stuck,
    ):
        loyalty_port = platform.urls["loyalty"].rsplit(":", 1)[1]
        launcher("prometheus-targets", f"loyalty:{loyalty_port}",
                 f"stuck-consumer:{stuck.port}", env=env)  # fmt: skip

        def service_up() -> list[dict[str, Any]]:
            return [
                t for t in targets(base)
                if t["labels"].get("service") == "loyalty" and t["health"] == "up"
            ]  # fmt: skip

        (loyalty,) = eventually(service_up, within=60)
        assert loyalty["scrapeUrl"] == f"http://127.0.0.1:{loyalty_port}/metrics"

        def lag_alert_firing() -> list[dict[str, Any]]:
            asyncio.run(publish_some(bootstrap, topic, 3))  # the lag keeps growing
            return [
                a for a in alerts(base)
                if a["labels"].get("alertname") == "ConsumerLagGrowing"
                and a["labels"].get("group") == group and a["state"] == "firing"
            ]  # fmt: skip

        (firing,) = eventually(lag_alert_firing, within=90, every=0.5)
        assert float(firing["value"]) > 0
        assert firing["labels"]["severity"] == "warning"
