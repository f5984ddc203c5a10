"""Real processes for the console's browser test: identity (operator accounts, the key
set), contracts (a consumer with a poison message to dead-letter) and the console, each
with this run's topic prefix and database schemas; and the system's Chromium."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from e2e_harness import free_port
from readiness import Startup, wait_ready
from servicekit.auth import ServiceCredentials

BIN = Path(sys.executable).parent
OPERATORS_SECRET = "op-secret-console"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    """The system's Chromium; installed from the distribution's packages when missing (as
    the launcher installs PostgreSQL). Playwright never downloads a browser of its own."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    if shutil.which("apt-get") is None:
        raise RuntimeError("no Chromium, and no apt-get to install the chromium package")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "chromium"], check=False, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    if shutil.which("chromium") is None:
        subprocess.run([*sudo, "apt-get", "update"], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        subprocess.run([*sudo, "apt-get", "install", "-y", "chromium"], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("chromium could not be installed")
    return found


@dataclass
class Processes:
    prefix: str
    workdir: Path
    urls: dict[str, str] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def schema(self, service: str) -> str:
        return f"{self.prefix.rstrip('.').replace('-', '_')}_{service}"

    def start(self, service: str, extra: dict[str, str]) -> None:
        port = free_port()
        self.urls[service] = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k not in ("PORTAL_JWKS", "PORTAL_JWKS_URL")}
        env |= {
            "PORTAL_HTTP_PORT": str(port), "PORTAL_TOPIC_PREFIX": self.prefix,
            "PORTAL_DATABASE_SCHEMA": self.schema(service),
            "PORTAL_INSTANCE_ID": self.prefix.rstrip("."),
            "PORTAL_SERVICE_CREDENTIALS": json.dumps(
                {"operators": ServiceCredentials.digest(OPERATORS_SECRET)}
            ),
            "PORTAL_LOG_LEVEL": "INFO",
        } | extra  # fmt: skip
        self.envs[service] = env
        log = self.workdir / f"{service}.log"
        self.logs[service] = log
        self.processes[service] = subprocess.Popen(
            [str(BIN / service), "serve"], env=env, stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_ready(service)

    def _wait_ready(self, service: str) -> None:
        process, log = self.processes[service], self.logs[service]
        wait_ready(Startup(service, process, self.urls[service], log))

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for service, process in self.processes.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            if process.returncode not in (0, -signal.SIGTERM):
                sys.stderr.write(self.logs[service].read_text()[-4000:])


@contextmanager
def console_platform(prefix: str) -> Iterator[Processes]:
    """identity, contracts and the console, wired to each other."""
    platform = Processes(prefix, Path(tempfile.mkdtemp(prefix="portal-console-")))
    try:
        platform.start("identity", {  # identity refuses to start without its own keys
            "PORTAL_DATA_KEY": secrets.token_urlsafe(32),
            "PORTAL_CODE_PEPPER": secrets.token_urlsafe(32),
        })  # fmt: skip
        jwks = f"{platform.urls['identity']}/.well-known/jwks.json"
        platform.start("contracts", {"PORTAL_JWKS_URL": jwks})
        platform.start("console", {
            "PORTAL_JWKS_URL": jwks,
            "PORTAL_SERVICES": json.dumps({s: platform.urls[s] for s in ("identity", "contracts")}),
            "PORTAL_OPERATOR_SECRET": OPERATORS_SECRET, "PORTAL_REFRESH_SECONDS": "1",
        })  # fmt: skip
        yield platform
    finally:
        platform.stop()


def create_operator(platform: Processes, username: str, password: str, secret: str) -> None:
    """`identity create-operator`, as an administrator runs it."""
    done = subprocess.run(
        [str(BIN / "identity"), "create-operator", username, "--totp-secret", secret],
        input=password + "\n", text=True, capture_output=True, env=platform.envs["identity"],
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert secret in done.stdout
