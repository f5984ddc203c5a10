"""Two instances of every service as real processes, supervised like a cluster would.

Instance "a" and "b" of identity, contracts, loyalty, notifier, claims and documents, and
two gateways in front. Both instances of a service share its schema, its consumer groups
and its secrets (identity's data key and pepper, the documents' master key), each with a
port and `PORTAL_INSTANCE_ID` of its own (environments: tests/service_environment.py, as
for the end-to-end tests).

Each gateway routes to both instances of every service (`PORTAL_UPSTREAMS` with `urls`:
it spreads requests over them and passes an instance that is down) and takes the key set
from either identity; the load driver alternates between the gateways. Contracts asks the
identity of its own letter, the notifier the documents of its own letter, and every
backend verifies tokens with its letter's identity key set (both identities sign with the
keys they share in the database).

The supervisor restarts a process that exited on its own (a loop that fails - e.g. the
database gone - takes the process down on purpose, servicekit.runner), as Kubernetes
would; such exits are counted. Every moment an instance was not serving is kept as a
`DownWindow`, from the signal (or the exit seen) until it answered `/health/ready` again.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from service_environment import GATEWAY_UPSTREAMS, Process, Run, environment, fresh_secrets

from chaos import REPO

BIN = Path(sys.executable).parent
LETTERS = ("a", "b")
BACKENDS = ("identity", "contracts", "loyalty", "notifier", "claims", "documents")
SYSTEMS = {
    "policy-admin": "pa-secret-chaos",
    "collections": "co-secret-chaos",
    "operators": "op-secret-chaos",
    "claims-handling": "ch-secret-chaos",
    "output-management": "om-secret-chaos",
    "notifier": "nt-secret-chaos",
    "contracts": "ct-secret-chaos",
}
# The notifier's settings for the run beyond the end-to-end tests' ones.
NOTIFIER = {
    # A send the notifier died in the middle of is tried again after this (the crash
    # window, README): short, so that the run can end.
    "PORTAL_SENDING_LEASE_SECONDS": "45",
    # A send that failed (its channel or the documents service down) is tried again
    # within seconds, not the production half minute and more: the run waits for it.
    "PORTAL_RETRY_BASE_SECONDS": "2",
    "PORTAL_RETRY_MAX_SECONDS": "10",
    "PORTAL_SMTP_TIMEOUT_SECONDS": "10",
    "PORTAL_SMS_TIMEOUT_SECONDS": "10",
    "PORTAL_DOCUMENTS_TIMEOUT_SECONDS": "10",
}
READY_WITHIN = 300.0  # a loaded machine starts 14 Python processes slowly
_PROBE = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


# Below the kernel's ephemeral range (32768-60999): a killed instance is started again on
# its port, and while it was down an outgoing connection or another run's bind(0) was
# given that port (a short run restarting documents-a failed: address already in use).
FLEET_PORTS = range(26_000, 32_000)


def free_port(taken: set[int]) -> int:
    """A port of FLEET_PORTS that nobody binds now and this fleet has not taken."""
    import socket

    draw = random.SystemRandom()
    for _ in range(500):
        port = draw.choice(FLEET_PORTS)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError("no free port for the fleet")


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
        taken: set[int] = set()
        for service in (*BACKENDS, "gateway"):
            for letter in LETTERS:
                instance = Instance(
                    service, letter, free_port(taken), self.workdir / f"{service}-{letter}.log"
                )
                self.instances[instance.name] = instance
        # the platform's addresses, never those of the shell that started the run
        below = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        below |= self.platform_env
        # Both instances of a service share its keys.
        shared = {service: fresh_secrets(service, "chaos-1") for service in BACKENDS}
        for instance in self.instances.values():
            # A backend verifies tokens with its letter's identity (a gateway: with either).
            identity = self.url("identity", instance.letter)
            run = Run(
                self.prefix, self.workdir / "business-time", SYSTEMS, below,
                {"PORTAL_JWKS_URL": identity + "/.well-known/jwks.json"},
                smtp_port=self.smtp_port, sms_url=self.sms_url, print_queue=self.print_queue,
                notifier=NOTIFIER,
            )  # fmt: skip
            process = Process(
                instance.service, instance.port, f"{self.prefix}{instance.name}",
                shared.get(instance.service, {}), self._neighbours(instance),
            )  # fmt: skip
            instance.environment = environment(run, process)

    def _neighbours(self, instance: Instance) -> dict[str, list[str]]:
        """A gateway routes to both instances of every service; a backend calls the
        instance of its own letter (contracts -> identity, notifier -> documents)."""
        if instance.service == "gateway":
            return {
                name: [self.url(name, letter) for letter in LETTERS] for name in GATEWAY_UPSTREAMS
            }
        return {name: [self.url(name, instance.letter)] for name in BACKENDS}

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances.values() if i.service == service]

    def url(self, service: str, letter: str) -> str:
        return self.instances[f"{service}-{letter}"].url

    def schema(self, service: str) -> str:
        return f"{self.prefix.rstrip('.').replace('-', '_')}_{service}"

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
