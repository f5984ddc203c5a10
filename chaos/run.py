"""One chaos run: platform, fleet, stand-ins, load and faults at once, then the end
conditions and the invariants. `run(Config(...))` is what `python -m chaos` and the short
test call; it cleans up everything it started, whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e_harness import Platform, StandIns
from servicekit.testing import unique

from chaos.faults import Injector
from chaos.fleet import Fleet
from chaos.invariants import Check, check_all, wait_until_ended
from chaos.load import Driver, Ledger
from chaos.platform import IsolatedPlatform, pick_port_base


@dataclass
class Config:
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(1, 2**31))
    load_seconds: float = 300.0
    concurrency: int = 4
    brokers: int = 3
    kills: int | None = None  # None: every instance once; n: n instances drawn by the seed
    pauses: int = 2
    broker_restarts: int = 2
    postgres_restarts: int = 1
    warmup_seconds: float = 15.0
    quiesce_within: float = 300.0
    isolated: bool = True  # False: the shared platform of os.environ, no broker/db faults
    log: Any = print


@dataclass
class Result:
    seed: int
    checks: list[Check]
    ledger: Ledger
    faults: dict[str, int]
    fault_errors: list[str]
    recovery: dict[str, float]
    own_exits: dict[str, int]
    quiet_after: float
    platform_started_in: float
    workdir: Path

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and not self.fault_errors

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.checks)

    @property
    def doubled(self) -> int:
        return sum(c.doubled for c in self.checks)


@contextlib.contextmanager
def _platform(config: Config) -> Iterator[tuple[IsolatedPlatform | None, dict[str, str]]]:
    if not config.isolated:
        names = ("PORTAL_DATABASE_URL", "PORTAL_KAFKA_BOOTSTRAP", "PORTAL_REDIS_URL")
        yield None, {n: os.environ[n] for n in names}
        return
    platform = IsolatedPlatform(config.brokers, pick_port_base(config.seed, config.brokers))
    try:
        config.log(f"isolated platform: {config.brokers} broker(s), ports from "
                   f"{platform.port_base}, state {platform.directory}")  # fmt: skip
        platform.start()
        config.log(f"  started in {platform.started_in:.0f} s")
        yield platform, dict(platform.environment)
    finally:
        platform.stop()


def run(config: Config) -> Result:
    config.log(f"chaos seed {config.seed} (again: python -m chaos --seed {config.seed})")
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    stand_ins = StandIns()
    try:
        with _platform(config) as (platform, environment):
            print_queue = workdir / "print-queue"
            print_queue.mkdir()
            fleet = Fleet(unique("chaos") + ".", workdir, environment, stand_ins.smtp.port,
                          stand_ins.sms.base_url, print_queue)  # fmt: skip
            try:
                began = time.monotonic()
                fleet.start()
                config.log(f"14 service processes ready in {time.monotonic() - began:.0f} s "
                           f"(logs in {workdir})")  # fmt: skip
                result = _drive(config, fleet, platform, environment, stand_ins, workdir)
                result.platform_started_in = platform.started_in if platform else 0.0
                return result
            finally:
                # The services stop before their platform does: gone first, Kafka and
                # PostgreSQL would leave them failing on their way out.
                fleet.stop()
    finally:
        stand_ins.stop()
        if not os.environ.get("CHAOS_KEEP_LOGS"):
            shutil.rmtree(workdir, ignore_errors=True)


def _drive(config: Config, fleet: Fleet, platform: IsolatedPlatform | None,
           environment: dict[str, str], stand_ins: StandIns, workdir: Path) -> Result:  # fmt: skip
    harness = Platform(fleet.prefix, workdir, workdir / "business-time",
                       stand_ins=stand_ins, print_queue=fleet.print_queue)  # fmt: skip
    injector = Injector(fleet, platform, config.seed)
    draw = random.Random(config.seed)  # noqa: S311 - seeded: the run can be repeated
    names = sorted(fleet.instances)
    kills = names if config.kills is None else draw.sample(names, config.kills)
    faults = injector.schedule(
        kills, config.pauses,
        config.broker_restarts if platform else 0, config.postgres_restarts if platform else 0,
    )  # fmt: skip
    config.log("faults: " + ", ".join(f"{f.kind} {f.target}" for f in faults))
    ledger = Ledger()
    dsn, bootstrap = environment["PORTAL_DATABASE_URL"], environment["PORTAL_KAFKA_BOOTSTRAP"]
    stop = threading.Event()

    def inject() -> None:
        if not stop.wait(config.warmup_seconds):
            injector.run(faults, config.load_seconds - config.warmup_seconds, stop)

    async def drive() -> float:
        async with Driver(fleet, ledger, dsn, bootstrap, harness, config.seed) as driver:
            injecting = asyncio.create_task(asyncio.to_thread(inject))
            try:
                await driver.run(config.load_seconds, config.concurrency)
                await injecting  # the last fault recovers before the run quiesces
            finally:
                stop.set()
                await asyncio.gather(injecting, return_exceptions=True)
        config.log(f"load done: {ledger.journeys_done} journeys of {ledger.journeys_started}; "
                   "waiting for the end conditions")  # fmt: skip
        return await wait_until_ended(fleet, dsn, bootstrap, config.quiesce_within)

    quiet_after = asyncio.run(drive())
    checks = asyncio.run(check_all(fleet, dsn, ledger, stand_ins.mails(), fleet.windows))
    return Result(
        seed=config.seed, checks=checks, ledger=ledger, faults=dict(injector.by_kind()),
        fault_errors=[f"{i.fault.kind} {i.fault.target}: {i.error}"
                      for i in injector.done if i.error],
        recovery=injector.longest_recovery(),
        own_exits={i.name: i.own_exits for i in fleet.instances.values() if i.own_exits},
        quiet_after=quiet_after, platform_started_in=0.0, workdir=workdir,
    )  # fmt: skip


def table(result: Result) -> str:
    """The invariants as a table, then the figures."""
    lines = [f"{'rule':<6} {'invariant':<58} {'expected':>8} {'found':>6} {'lost':>5} "
             f"{'doubled':>7}  ok"]  # fmt: skip
    for c in result.checks:
        lines.append(f"{c.rule:<6} {c.what:<58} {c.expected:>8} {c.found:>6} {c.lost:>5} "
                     f"{c.doubled:>7}  {'yes' if c.ok else 'NO'}")  # fmt: skip
        for note in ([c.detail] if c.detail else []) + c.examples:
            lines.append(f"{'':<6}   {note}")
    ledger = result.ledger
    lines += [
        "",
        f"seed {result.seed}; events driven {ledger.events_driven()} "
        f"({ledger.journeys_done} journeys complete of {ledger.journeys_started}, "
        f"abandoned {dict(ledger.abandoned) or 0}); HTTP answers {len(ledger.answers)}, "
        f"no answer {sum(ledger.no_answer.values())}",
        "faults injected: " + (", ".join(f"{k} {v}" for k, v in sorted(result.faults.items()))
                               or "none"),
        "longest recovery: " + (", ".join(f"{k} {v:.1f} s"
                                          for k, v in sorted(result.recovery.items())) or "-"),
        f"lost {result.lost}, doubled {result.doubled}; quiet {result.quiet_after:.0f} s after "
        "the load; processes that exited on their own (restarted by the supervisor): "
        + (", ".join(f"{k} {v}" for k, v in sorted(result.own_exits.items())) or "none"),
    ]  # fmt: skip
    lines += [f"FAULT FAILED: {e}" for e in result.fault_errors]
    return "\n".join(lines)
