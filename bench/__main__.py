"""`python -m bench`: every benchmark in one run, each figure next to its baseline.

    python -m bench                     # full run (rebuild over 1,000,000 events)
    python -m bench --quick             # fast check: 10,000 events, rebuild over 50,000,
                                        #   the notifier over 500 e-mails, a fifth of the
                                        #   instrumentation and gateway counts (aim: < 3 min)
    python -m bench --json out.json     # write the machine facts and the rows there
                                        # (default .local/bench/last.json; the one
                                        # before is kept as .local/bench/previous.json)
    python -m bench --compare OLD.json  # then print every ratio's change against OLD
    python -m bench --sections fold     # only some: appends,relay,fold,consumer,rebuild,
                                        #   notifier,instrumentation,gateway,e2e,claims,
                                        #   statements,contracts
    python -m bench --profile prof/     # cProfile the timed subjects (figures then slower)

Needs PORTAL_DATABASE_URL and PORTAL_KAFKA_BOOTSTRAP (`make bench` sets them).

Rows are dicts (see bench.common.row): section, name, events, seconds, events_per_s and,
where there is one, baseline, baseline_events_per_s, ratio, aim, met, note. A module
bench/notifier_email.py with `async def run(bootstrap: str, dsn: str) -> list[dict]`
contributes its rows when it exists.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import structlog
from servicekit.logging import configure_logging
from servicekit.testing import unique
from servicekit.tracing import configure_tracing

from bench import (
    appends,
    claims,
    consumer,
    contracts_intake,
    e2e,
    fold,
    gateway,
    instrumentation,
    rebuild,
    relay,
    statements,
)
from bench.common import Row, compare, enable_profiling, profiling, say

SECTIONS = (
    "appends", "relay", "fold", "consumer", "rebuild", "notifier", "instrumentation", "gateway",
    "e2e", "claims", "statements", "contracts",
)  # fmt: skip
NOTIFIER_MODULE = "bench.notifier_email"
QUICK_NOTIFIER_MESSAGES = 500  # its run(..., messages=) in a quick run (default 2,000)
DEFAULT_JSON = Path(".local/bench/last.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a fast check")
    parser.add_argument(
        "--events", type=int, help="events per figure of 1-4 (default 100,000; quick 10,000)"
    )
    parser.add_argument(
        "--tx-events",
        type=int,
        help="events of the one-event-per-transaction figure (default 20,000; quick 1,000)",
    )
    parser.add_argument("--batch", type=int, default=500, help="events per batched transaction")
    parser.add_argument(
        "--rebuild-events",
        type=int,
        help="events replayed by the rebuild (default 1,000,000; quick 50,000)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="write machine facts and rows here"
    )
    parser.add_argument("--compare", type=Path, help="print each ratio's change against OLD.json")
    parser.add_argument("--profile", type=Path, help="cProfile each timed subject into DIR")
    args = parser.parse_args(argv)
    # Quick: the whole run stays under 3 minutes on the 2-core machine (see bench/README).
    args.events = args.events or (10_000 if args.quick else 100_000)
    args.tx_events = args.tx_events or (1_000 if args.quick else 20_000)
    args.rebuild_events = args.rebuild_events or (50_000 if args.quick else 1_000_000)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    for name in ("events", "tx_events", "batch", "rebuild_events"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f'{name} is not set: run `make bench`, or eval "$(deploy/local/platform env)"')
    return value


async def machine_facts(dsn: str, bootstrap: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        pg = {
            r["name"]: r["setting"]
            for r in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name IN ('server_version',"
                " 'fsync', 'synchronous_commit', 'shared_buffers', 'wal_level')"
            )
        }
    finally:
        await conn.close()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()  # noqa: ASYNC240
            if line.startswith("model name")
        ),
        "?",
    )
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    url = urlsplit(dsn)
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gib": round(memory_gib, 1),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "event_loop": "asyncio (default policy)",
        "packages": {
            p: metadata.version(p) for p in ("asyncpg", "aiokafka", "pydantic", "pydantic-core")
        },
        "kafka_bootstrap": bootstrap,
        "postgres": f"{url.hostname}:{url.port}{url.path}",
        "postgres_settings": pg,
    }


def print_facts(facts: dict[str, Any], args: argparse.Namespace) -> None:
    pg = facts["postgres_settings"]
    packages = ", ".join(f"{k} {v}" for k, v in facts["packages"].items())
    print("Benchmarks - machine")
    print(f"  cores             {facts['cores']} ({facts['cores_usable']} usable), {facts['cpu']}")
    print(f"  memory            {facts['memory_gib']} GiB")
    print(f"  os                {facts['os']}")
    print(f"  python            {facts['python']}, {facts['event_loop']}")
    print(f"  packages          {packages}")
    print(f"  kafka bootstrap   {facts['kafka_bootstrap']}")
    print(
        f"  postgresql        {facts['postgres']} (server {pg.get('server_version')},"
        f" fsync={pg.get('fsync')}, synchronous_commit={pg.get('synchronous_commit')},"
        f" shared_buffers={pg.get('shared_buffers')} x 8 KiB)"
    )
    print(
        f"  run               {'quick' if args.quick else 'full'}: events {args.events:,},"
        f" one-per-tx events {args.tx_events:,}, batch {args.batch},"
        f" rebuild events {args.rebuild_events:,}"
        + (" - PROFILED, figures are slowed by cProfile" if args.profile else "")
    )
    print(flush=True)


def _num(value: Any, digits: int = 0) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_table(rows: list[Row]) -> None:
    header = ["section", "figure", "events", "s", "events/s", "baseline", "base ev/s",
              "ratio", "aim", "met"]  # fmt: skip
    lines = [header]
    for r in rows:
        met = r.get("met")
        lines.append(
            [
                str(r.get("section", "-")),
                str(r.get("name", r.get("figure", "-"))),
                _num(r.get("events")),
                _num(r.get("seconds"), 2),
                _num(r.get("events_per_s")),
                str(r.get("baseline", "-")),
                _num(r.get("baseline_events_per_s")),
                _num(r.get("ratio"), 3),
                str(r.get("aim", "-")),
                "-" if met is None else ("yes" if met else "NO"),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {2, 3, 4, 6, 7}
    for n, line in enumerate(lines):
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        print(" | ".join(cells).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    notes = [(r.get("name", "-"), r["note"]) for r in rows if r.get("note")]
    if notes:
        print("\nnotes:")
        for name, note in notes:
            print(f"  {name}: {note}")
    print(flush=True)


_ALIASES = {
    "section": ("benchmark",),
    "name": ("variant", "figure"),
    "events": ("messages",),
    "events_per_s": ("messages_per_second",),
    "note": ("notes",),
}


def normalized(found: dict[str, Any]) -> Row:
    """A row from another module in this table's keys (its own keys are kept as well)."""
    result = dict(found)
    for key, aliases in _ALIASES.items():
        for alias in aliases:
            if key not in result and alias in found:
                result[key] = found[alias]
    return result


def notifier_runner() -> Callable[[str, str], Awaitable[list[dict[str, Any]]]] | None:
    """The notifier e-mail benchmark, when its module exists (written separately)."""
    if importlib.util.find_spec(NOTIFIER_MODULE) is None:
        return None
    module = importlib.import_module(NOTIFIER_MODULE)
    runner: Callable[[str, str], Awaitable[list[dict[str, Any]]]] = module.run
    return runner


async def main(args: argparse.Namespace) -> int:
    dsn = env("PORTAL_DATABASE_URL")
    bootstrap = env("PORTAL_KAFKA_BOOTSTRAP")
    # Library warnings (aiokafka's) go to stderr with the progress: stdout is the report.
    logging.basicConfig(format="%(name)s: %(message)s", stream=sys.stderr, level=logging.WARNING)
    configure_logging("bench", "WARNING")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    configure_tracing("bench")  # as Runtime.start does: spans are really made
    if args.profile:
        enable_profiling(args.profile)
    facts = await machine_facts(dsn, bootstrap)
    print_facts(facts, args)

    rows: list[Row] = []
    errors: list[dict[str, str]] = []
    appends_topic = unique("bench_appends")  # named in outbox rows only, never produced to
    plan: list[tuple[str, Callable[[], Awaitable[list[Row]]]]] = [
        ("appends", lambda: appends.run(dsn, appends_topic, args.tx_events, args.events,
                                        args.batch)),
        ("relay", lambda: relay.run(dsn, bootstrap, args.events)),
        ("fold", lambda: fold.run(dsn, bootstrap, args.events)),
        ("consumer", lambda: consumer.run(dsn, bootstrap, args.events)),
        ("rebuild", lambda: rebuild.run(dsn, bootstrap, args.rebuild_events)),
        ("instrumentation", lambda: instrumentation.run(bootstrap, dsn, args.quick)),
        ("gateway", lambda: gateway.run(bootstrap, dsn, args.quick)),
        ("e2e", lambda: e2e.run(bootstrap, dsn, args.quick)),
        ("claims", lambda: claims.run(bootstrap, dsn, args.quick)),
        ("statements", lambda: statements.run(dsn, args.quick)),
        ("contracts", lambda: contracts_intake.run(bootstrap, dsn, args.quick)),
    ]  # fmt: skip
    if "notifier" in args.sections:
        try:
            notifier = notifier_runner()
        except Exception as exc:
            errors.append({"section": "notifier", "error": f"import failed: {exc!r}"})
            traceback.print_exc()
            notifier = None
        if notifier is None:
            say(f"{NOTIFIER_MODULE} is not there (or did not import): no notifier rows")
        else:
            runner = notifier

            async def notifier_rows() -> list[Row]:
                if args.quick and "messages" in inspect.signature(runner).parameters:
                    quick_rows = await runner(bootstrap, dsn, messages=QUICK_NOTIFIER_MESSAGES)  # type: ignore[call-arg]
                    return [normalized(r) for r in quick_rows]
                return [normalized(r) for r in await runner(bootstrap, dsn)]

            plan.append(("notifier", notifier_rows))

    started = time.perf_counter()
    for name, work in plan:
        if name not in args.sections:
            continue
        say(f"{name}: running")
        section_started = time.perf_counter()
        try:
            found = await work()
        except Exception as exc:
            traceback.print_exc()
            errors.append({"section": name, "error": repr(exc)})
            say(f"{name}: FAILED ({exc!r})")
            continue
        rows.extend(found)
        say(f"{name}: done in {time.perf_counter() - section_started:.1f} s")
    total = time.perf_counter() - started

    print_table(rows)
    for error in errors:
        print(f"FAILED {error['section']}: {error['error']}")
    print(f"total {total:.1f} s" + (" (profiled)" if profiling() else ""))
    if args.json:
        document = {
            "machine": facts,
            "settings": {
                "quick": args.quick,
                "events": args.events,
                "tx_events": args.tx_events,
                "batch": args.batch,
                "rebuild_events": args.rebuild_events,
                "sections": args.sections,
                "profiled": bool(args.profile),
            },
            "rows": rows,
            "errors": errors,
            "total_seconds": round(total, 1),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        if args.json == DEFAULT_JSON and args.json.exists():
            args.json.replace(args.json.with_name("previous.json"))
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"rows written to {args.json}")
    if args.compare:
        old_rows = json.loads(args.compare.read_text())["rows"]
        print(f"\nratios against {args.compare}:")
        print("\n".join(compare(old_rows, rows)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
