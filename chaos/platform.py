"""The chaos run's own Kafka, PostgreSQL and Redis: an isolated instance of the launcher
(`deploy/local/platform` with PORTAL_PLATFORM_DIR and PORTAL_PLATFORM_PORT_BASE, see
deploy/README.md), so that broker and database faults never touch the shared platform
other sessions use (19092/15432/16379). Every launcher call here names the instance."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from servicekit.kafka import servers

from chaos import REPO

LAUNCHER = REPO / "deploy/local/platform"
SHARED_PORTS = (19092, 15432, 16379)


def _port_range_free(base: int, brokers: int) -> bool:
    ports = [base, base + 1, base + 2]
    ports += [base + 10 * n + k for n in range(1, brokers + 1) for k in (0, 1)]
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


def pick_port_base(seed: int, brokers: int) -> int:
    """A port base whose ports nobody listens on (and far from the shared instance's)."""
    for attempt in range(50):
        # Below the fleet's ports and the kernel's ephemeral range (32768-): a restarted
        # broker or PostgreSQL binds its port again, which nobody else may have been given.
        base = 20_000 + ((seed + attempt * 7919) % 590) * 10
        if _port_range_free(base, brokers) and not any(
            base <= p <= base + 10 * brokers + 1 for p in SHARED_PORTS
        ):
            return base
    raise RuntimeError("no free port range for the isolated platform")


@dataclass
class IsolatedPlatform:
    brokers: int
    port_base: int
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chaos-plat-")))
    environment: dict[str, str] = field(default_factory=dict)
    started_in: float = 0.0

    def _launcher(self, *args: str, timeout: float = 600) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        env |= {"PORTAL_PLATFORM_DIR": str(self.directory),
                "PORTAL_PLATFORM_PORT_BASE": str(self.port_base)}  # fmt: skip
        done = subprocess.run(  # noqa: S603 - the repository's own launcher
            [str(LAUNCHER), *args], env=env, capture_output=True, text=True, timeout=timeout,
            cwd=REPO,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"platform {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout

    def start(self) -> None:
        began = time.monotonic()
        self._launcher("start", "--brokers", str(self.brokers))
        for line in self._launcher("env").splitlines():
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export":
                name, value = words[1].split("=", 1)
                self.environment[name] = value
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        try:
            self._launcher("stop", "--purge")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def bootstrap(self) -> str:
        return self.environment["PORTAL_KAFKA_BOOTSTRAP"]

    @property
    def database_url(self) -> str:
        return self.environment["PORTAL_DATABASE_URL"]

    def broker_nodes(self) -> list[str]:
        return [str(n) for n in range(1, self.brokers + 1)]

    def controller(self) -> str:
        """The node id of the active KRaft controller."""
        return self._launcher("kafka-controller").strip() or "1"

    def restart_broker(self, node: str) -> None:
        """kill -9 of the node, then started again on its data (the launcher waits)."""
        self._launcher("restart-kafka", node, "--kill")

    def restart_postgres(self) -> None:
        self._launcher("restart-postgres", "--immediate")

    def wait_broker_writable(self, within: float = 120.0) -> None:
        asyncio.run(_probe_kafka(self.bootstrap, within))

    def wait_database(self, within: float = 120.0) -> None:
        asyncio.run(_probe_postgres(self.database_url, within))


async def _probe_kafka(bootstrap: str, within: float) -> None:
    deadline = time.monotonic() + within
    topic = "chaos.probe"
    while True:
        producer = AIOKafkaProducer(bootstrap_servers=servers(bootstrap), acks="all",
                                    request_timeout_ms=5_000)  # fmt: skip
        try:
            await producer.start()
            await producer.send_and_wait(topic, uuid.uuid4().bytes)
            return
        except (KafkaError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await producer.stop()


async def _probe_postgres(dsn: str, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
            await conn.fetchval("SELECT 1")
            await conn.close()
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
