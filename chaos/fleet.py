"""Two instances of every service as real processes, supervised like a cluster would.

Instance "a" and "b" of identity, contracts, loyalty, notifier, claims and documents, and
two gateways in front. Both instances of a service share its schema, its consumer groups
and its secrets (identity's data key and pepper, the documents' master key), each with a
port and `PORTAL_INSTANCE_ID` of its own.

The gateway takes one URL per upstream (`PORTAL_UPSTREAMS`: no list, no balancing), so
gateway "a" routes to the "a" instance of every service and gateway "b" to the "b" ones;
the load driver alternates between the gateways, so both instances of every HTTP service
take customer traffic. Contracts asks the identity of its own letter, the notifier the
documents of its own letter, and every service verifies tokens with its letter's
identity key set (both identities sign with the keys they share in the database).

The supervisor restarts a process that exited on its own (a loop that fails - e.g. the
database gone - takes the process down on purpose, servicekit.runner), as Kubernetes
would; such exits are counted. Every moment an instance was not serving is kept as a
`DownWindow`, from the signal (or the exit seen) until it answered `/health/ready` again.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from servicekit.auth import ServiceCredentials

from chaos import REPO

BIN = Path(sys.executable).parent
LETTERS = ("a", "b")
BACKENDS = ("identity", "contracts", "loyalty", "notifier", "claims", "documents")
ROUTED = ("identity", "contracts", "loyalty", "claims", "documents")
SYSTEMS = {
    "policy-admin": "pa-secret-chaos",
    "collections": "co-secret-chaos",
    "operators": "op-secret-chaos",
    "claims-handling": "ch-secret-chaos",
    "output-management": "om-secret-chaos",
    "notifier": "nt-secret-chaos",
    "contracts": "ct-secret-chaos",
}
GENEROUS = "1000000/minute"
READY_WITHIN = 300.0  # a loaded machine starts 14 Python processes slowly
_PROBE = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DownWindow:
    instance: str
    kind: str  # what took it down: a fault kind, or "exit" (it stopped on its own)
    start: float
    end: float | None = None

    def covers(self, moment: float, grace: float) -> bool:
        end = self.end if self.end is not None else float("inf")
        return self.start - grace <= moment <= end + grace


@dataclass
class Instance:
    service: str
    letter: str
    port: int
    log: Path
    environment: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    held: bool = False  # the fault injector has it down on purpose
    restarts: int = 0
    own_exits: int = 0

    @property
    def name(self) -> str:
        return f"{self.service}-{self.letter}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Fleet:
    prefix: str
    workdir: Path
    platform_env: dict[str, str]  # PORTAL_DATABASE_URL, PORTAL_KAFKA_BOOTSTRAP, PORTAL_REDIS_URL
    smtp_port: int
    sms_url: str
    print_queue: Path
    instances: dict[str, Instance] = field(default_factory=dict)
    windows: list[DownWindow] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    # ------------------------------------------------------------------ layout

    def plan(self) -> None:
        shared = {
            "identity": {"PORTAL_DATA_KEY": _key(), "PORTAL_CODE_PEPPER": _key()},
            "documents": {"PORTAL_MASTER_KEYS": json.dumps({"chaos-1": _key()}),
                          "PORTAL_MASTER_KEY_ID": "chaos-1"},
        }  # fmt: skip
        for service in (*BACKENDS, "gateway"):
            for letter in LETTERS:
                instance = Instance(
                    service, letter, free_port(), self.workdir / f"{service}-{letter}.log"
                )
                self.instances[instance.name] = instance
        for instance in self.instances.values():
            instance.environment = self._environment(instance, shared.get(instance.service, {}))

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances.values() if i.service == service]

    def url(self, service: str, letter: str) -> str:
        return self.instances[f"{service}-{letter}"].url

    def schema(self, service: str) -> str:
        return f"{self.prefix.rstrip('.').replace('-', '_')}_{service}"

    def _environment(self, instance: Instance, shared: dict[str, str]) -> dict[str, str]:
        letter = instance.letter
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        identity = self.url("identity", letter)
        base = inherited | self.platform_env | {
            "PORTAL_HTTP_PORT": str(instance.port),
            "PORTAL_TOPIC_PREFIX": self.prefix,
            "PORTAL_DATABASE_SCHEMA": self.schema(instance.service),
            "PORTAL_INSTANCE_ID": f"{self.prefix}{instance.name}",
            "PORTAL_JWKS_URL": identity + "/.well-known/jwks.json",
            "PORTAL_SERVICE_CREDENTIALS": json.dumps(
                {name: ServiceCredentials.digest(secret) for name, secret in SYSTEMS.items()}
            ),
            "PORTAL_CLOCK_FILE": str(self.workdir / "business-time"),
            "PORTAL_LOG_LEVEL": "INFO",
        }  # fmt: skip
        return base | shared | self._own(instance)

    def _own(self, instance: Instance) -> dict[str, str]:
        letter = instance.letter
        match instance.service:
            case "identity":
                return {"PORTAL_TRUSTED_PROXIES": json.dumps(["127.0.0.1"])}
            case "contracts":
                return {"PORTAL_IDENTITY_BASE_URL": self.url("identity", letter),
                        "PORTAL_IDENTITY_SECRET": SYSTEMS["contracts"]}  # fmt: skip
            case "notifier":
                return {
                    "PORTAL_SMTP_HOST": "127.0.0.1", "PORTAL_SMTP_PORT": str(self.smtp_port),
                    "PORTAL_SMTP_SECURITY": "none", "PORTAL_SMS_BASE_URL": self.sms_url,
                    "PORTAL_SMS_API_KEY": "chaos", "PORTAL_SMS_API_SECRET": "chaos-sms-secret",
                    "PORTAL_PRINT_QUEUE_DIR": str(self.print_queue),
                    "PORTAL_DOCUMENTS_BASE_URL": self.url("documents", letter),
                    "PORTAL_DOCUMENTS_SECRET": SYSTEMS["notifier"],
                    "PORTAL_RETRY_BASE_SECONDS": "1", "PORTAL_RETRY_MAX_SECONDS": "5",
                    # A send the notifier died in the middle of is tried again after this
                    # (the crash window, README): short, so that the run can end.
                    "PORTAL_SENDING_LEASE_SECONDS": "45",
                    "PORTAL_SMTP_TIMEOUT_SECONDS": "10",
                    "PORTAL_SMS_TIMEOUT_SECONDS": "10",
                    "PORTAL_DOCUMENTS_TIMEOUT_SECONDS": "10",
                }  # fmt: skip
            case "gateway":
                upstreams = {name: {"url": self.url(name, letter)} for name in ROUTED}
                return {
                    "PORTAL_UPSTREAMS": json.dumps(upstreams),
                    "PORTAL_RATE_LIMIT_PER_ADDRESS": GENEROUS,
                    "PORTAL_RATE_LIMIT_PER_ACCOUNT": GENEROUS,
                    "PORTAL_RATE_LIMIT_PUBLIC_PER_ADDRESS": GENEROUS,
                    "PORTAL_OPENAPI_CACHE_SECONDS": "3600",
                    "PORTAL_TRUSTED_PROXIES": json.dumps(["127.0.0.1"]),
                }
        return {}

    # --------------------------------------------------------------- processes

    def start(self) -> None:
        """Every process at once (the key sets are fetched when first needed); on a
        loaded machine their imports alone take minutes."""
        self.plan()
        for instance in self.instances.values():
            self._spawn(instance)
        for instance in self.instances.values():
            self.wait_ready(instance, within=2 * READY_WITHIN)
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    def _spawn(self, instance: Instance) -> None:
        with instance.log.open("ab") as log:
            instance.process = subprocess.Popen(  # noqa: S603 - the services' own scripts
                [str(BIN / instance.service), "serve"],
                env=instance.environment, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip

    def ready(self, instance: Instance) -> bool:
        """One probe of `/health/ready` (plain urllib: an httpx client per probe loads the
        CA bundle each time, seconds of CPU per minute of polling on a loaded machine)."""
        try:
            with _PROBE.open(f"{instance.url}/health/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except (OSError, http.client.HTTPException):  # refused, 503, reset, timed out
            return False

    def wait_ready(
        self, instance: Instance, within: float = READY_WITHIN, respawn: bool = True
    ) -> float:
        """Seconds until `instance` answers ready (raises when it does not); `respawn`
        (the caller holds it): start it again when it exits meanwhile."""
        began = time.monotonic()
        while time.monotonic() - began < within:
            if self.ready(instance):
                return time.monotonic() - began
            process = instance.process
            if respawn and process is not None and process.poll() is not None:
                # Exited while starting (e.g. the database was not back yet): start again.
                time.sleep(1)
                self._spawn(instance)
            time.sleep(0.1)
        raise RuntimeError(f"{instance.name} not ready:\n{self.tail(instance)}")

    def tail(self, instance: Instance, chars: int = 3000) -> str:
        try:
            return instance.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _supervise(self) -> None:
        """Every exited instance is restarted at once, each by a thread of its own (a
        database restart takes every service down together: restarting them one after
        another would take minutes here)."""
        while not self._stop.wait(0.25):
            for instance in list(self.instances.values()):
                with self._lock:
                    process = instance.process
                    if instance.held or process is None or process.poll() is None:
                        continue
                    instance.held = True
                threading.Thread(target=self._restart, args=(instance,), daemon=True).start()

    def _restart(self, instance: Instance) -> None:
        window = DownWindow(instance.name, "exit", time.monotonic())
        self.windows.append(window)
        instance.own_exits += 1
        try:
            time.sleep(1.0)  # a supervisor's back-off
            if not self._stop.is_set():
                self._spawn(instance)
                self.wait_ready(instance)
        finally:
            window.end = time.monotonic()
            instance.held = False

    @contextlib.contextmanager
    def down(self, instance: Instance, kind: str) -> Iterator[DownWindow]:
        """Hold `instance` (the supervisor leaves it alone) while a fault has it down; the
        window closes once it answers ready again."""
        with self._lock:
            instance.held = True
        window = DownWindow(instance.name, kind, time.monotonic())
        self.windows.append(window)
        try:
            yield window
        finally:
            window.end = time.monotonic()
            instance.held = False

    def kill(self, instance: Instance) -> float:
        """kill -9 and start again; seconds until it answered ready."""
        with self.down(instance, "kill") as window:
            assert instance.process is not None
            instance.process.kill()
            instance.process.wait()
            self._spawn(instance)
            instance.restarts += 1
            self.wait_ready(instance)
            return time.monotonic() - window.start

    def pause(self, instance: Instance, seconds: float) -> float:
        """SIGSTOP for `seconds` (past the consumers' session timeout), then SIGCONT;
        seconds from the stop until it answered ready again."""
        with self.down(instance, "pause") as window:
            assert instance.process is not None
            instance.process.send_signal(signal.SIGSTOP)
            time.sleep(seconds)  # the fault itself lasts this long
            instance.process.send_signal(signal.SIGCONT)
            self.wait_ready(instance)
            return time.monotonic() - window.start

    def mark_all_down(self, kind: str) -> list[DownWindow]:
        """A platform fault (broker, database): every instance is behind it."""
        now = time.monotonic()
        opened = [DownWindow(i.name, kind, now) for i in self.instances.values()]
        self.windows.extend(opened)
        return opened

    def wait_all_ready(self, within: float = READY_WITHIN) -> None:
        """Every instance ready (the supervisor restarts those that exited meanwhile)."""
        for instance in self.instances.values():
            self.wait_ready(instance, within, respawn=False)

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=READY_WITHIN + 5)
        running = [i.process for i in self.instances.values() if i.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
