"""Start the platform's services as real processes for end-to-end tests.

Each test session gets its own topic prefix and database schemas, so it never sees what
`make run` or another session left behind, and a business-time file it moves at will.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from servicekit.auth import (
    ServiceCredentials,
    basic_authorization,
    generate_signing_key,
    mint_token,
)

BIN = Path(sys.executable).parent
SYSTEMS = {
    "policy-admin": "pa-secret-e2e",
    "collections": "co-secret-e2e",
    "operators": "op-secret-e2e",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Platform:
    prefix: str
    clock_file: Path
    private_key: dict[str, Any]
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def set_time(self, at: datetime) -> None:
        self.clock_file.write_text(at.isoformat())

    def token(self, customer_id: str, second_factor: bool = False) -> str:
        methods = ("pwd", "sms") if second_factor else ("pwd",)
        expires = datetime.now().astimezone() + timedelta(hours=1)
        return mint_token(self.private_key, customer_id, "portal", expires, methods=methods)

    def as_customer(self, service: str, customer_id: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.urls[service],
            headers={"Authorization": f"Bearer {self.token(customer_id)}"},
            timeout=10,
        )

    def as_system(self, service: str, system: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.urls[service],
            headers={"Authorization": basic_authorization(system, SYSTEMS[system])},
            timeout=30,
        )

    def topic(self, name: str) -> str:
        return self.prefix + name


def _environment(
    platform: Platform, service: str, port: int, jwks: dict[str, Any]
) -> dict[str, str]:
    return os.environ | {
        "PORTAL_HTTP_PORT": str(port),
        "PORTAL_TOPIC_PREFIX": platform.prefix,
        "PORTAL_DATABASE_SCHEMA": f"{platform.prefix.rstrip('.').replace('-', '_')}_{service}",
        "PORTAL_JWKS": json.dumps(jwks),
        "PORTAL_SERVICE_CREDENTIALS": json.dumps(
            {name: ServiceCredentials.digest(secret) for name, secret in SYSTEMS.items()}
        ),
        "PORTAL_CLOCK_FILE": str(platform.clock_file),
        "PORTAL_LOG_LEVEL": "INFO",
    }


@contextmanager
def running_platform(services: tuple[str, ...], prefix: str) -> Iterator[Platform]:
    private_key, jwks = generate_signing_key("e2e")
    workdir = Path(tempfile.mkdtemp(prefix="portal-e2e-"))
    platform = Platform(prefix, workdir / "business-time", private_key)
    try:
        for service in services:
            port = free_port()
            log = workdir / f"{service}.log"
            platform.logs[service] = log
            platform.urls[service] = f"http://127.0.0.1:{port}"
            platform.processes[service] = subprocess.Popen(
                [str(BIN / service), "serve"],
                env=_environment(platform, service, port, jwks),
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
        for service in services:
            _wait_ready(platform, service)
        yield platform
    finally:
        for process in platform.processes.values():
            process.send_signal(signal.SIGTERM)
        for service, process in platform.processes.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            if process.returncode not in (0, -signal.SIGTERM):
                sys.stderr.write(platform.logs[service].read_text()[-4000:])


def _wait_ready(platform: Platform, service: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if platform.processes[service].poll() is not None:
            raise RuntimeError(f"{service} exited:\n{platform.logs[service].read_text()[-4000:]}")
        try:
            if httpx.get(f"{platform.urls[service]}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{service} not ready:\n{platform.logs[service].read_text()[-4000:]}")


def eventually(check: Any, within: float = 60.0, every: float = 0.25) -> Any:
    """Poll `check()` until it returns a truthy value; return it."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not reached within {within}s; last value: {last!r}")
