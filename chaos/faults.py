"""The fault injector: a seeded schedule of faults, one at a time, at random moments.

Kinds:
- `kill`: kill -9 of one service process (every instance of every service, the gateways
  included, once each in the full run), then started again;
- `pause`: SIGSTOP past the consumers' session timeout (30 s), then SIGCONT;
- `broker`: a Kafka broker restarted (the active controller at least once when the
  isolated platform has three; the only broker otherwise);
- `postgres`: PostgreSQL stopped with `-m immediate` and started again.

Broker and database faults act only on the isolated platform the chaos run started
(`chaos.platform`), never on the shared one. The recovery time of a fault is from its
first moment until every instance answers `/health/ready` again and, for the platform
faults, the broker takes an acks=all write (broker) / the database answers (postgres).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from chaos.fleet import Fleet
from chaos.platform import IsolatedPlatform

PAUSE_SECONDS = 36.0  # past the consumers' session timeout (30 s)
KINDS = ("kill", "pause", "broker", "postgres")


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str  # an instance name, a broker node ("controller", "1"...), "postgres"


@dataclass
class Injected:
    fault: Fault
    started: float
    recovered_after: float | None = None
    error: str | None = None


@dataclass
class Injector:
    fleet: Fleet
    platform: IsolatedPlatform | None
    seed: int
    done: list[Injected] = field(default_factory=list)

    def schedule(self, kills: list[str], pauses: int, brokers: int, postgres: int) -> list[Fault]:
        """The faults in a seeded order: the kills named, `pauses` SIGSTOPs of instances
        drawn at random, `brokers` broker restarts (the first one the active controller),
        `postgres` database restarts."""
        draw = random.Random(self.seed)  # noqa: S311 - seeded: the run can be repeated
        names = sorted(self.fleet.instances)
        faults = [Fault("kill", name) for name in kills]
        faults += [Fault("pause", draw.choice(names)) for _ in range(pauses)]
        if self.platform is not None:
            nodes = self.platform.broker_nodes()
            faults += [
                Fault("broker", "controller" if n == 0 else draw.choice(nodes))
                for n in range(brokers)
            ]
            faults += [Fault("postgres", "postgres")] * postgres
        draw.shuffle(faults)
        return faults

    def run(self, faults: list[Fault], within: float, stop: threading.Event) -> None:
        """Inject `faults` one after another, spread over `within` seconds at random
        moments (each gap drawn from the seeded generator)."""
        draw = random.Random(self.seed + 1)  # noqa: S311 - seeded: the run can be repeated
        gap = within / (len(faults) + 1) if faults else 0
        for fault in faults:
            if stop.wait(draw.uniform(0.3 * gap, 1.0 * gap)):
                return
            self.inject(fault)

    def inject(self, fault: Fault) -> Injected:
        injected = Injected(fault, time.monotonic())
        self.done.append(injected)
        try:
            match fault.kind:
                case "kill":
                    injected.recovered_after = self.fleet.kill(self.fleet.instances[fault.target])
                case "pause":
                    injected.recovered_after = self.fleet.pause(
                        self.fleet.instances[fault.target], PAUSE_SECONDS
                    )
                case "broker" | "postgres":
                    injected.recovered_after = self._platform_fault(fault, injected.started)
        except Exception as exc:  # reported in the table, never hidden
            injected.error = repr(exc)
        return injected

    def _platform_fault(self, fault: Fault, began: float) -> float:
        assert self.platform is not None
        windows = self.fleet.mark_all_down(fault.kind)
        try:
            if fault.kind == "broker":
                node = self.platform.controller() if fault.target == "controller" else fault.target
                self.platform.restart_broker(node)
                self.platform.wait_broker_writable()
            else:
                self.platform.restart_postgres()
                self.platform.wait_database()
            self.fleet.wait_all_ready()
            return time.monotonic() - began
        finally:
            now = time.monotonic()
            for window in windows:
                window.end = now

    def by_kind(self) -> Counter[str]:
        return Counter(i.fault.kind for i in self.done)

    def longest_recovery(self) -> dict[str, float]:
        longest: dict[str, float] = {}
        for injected in self.done:
            if injected.recovered_after is not None:
                kind = injected.fault.kind
                longest[kind] = max(longest.get(kind, 0.0), injected.recovered_after)
        return longest
