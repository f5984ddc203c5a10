"""portal - the operators' commands of every service in one place (OPS-3).

  portal rebuild loyalty                       refill a projection from the event log
                                               (progress bar with ETA, the service's own)
  portal jobs run --kind monthly --date D      a loyalty run for a business date (loyalty's
                                               internal jobs route, as the operators system)
  portal history CUSTOMER_ID --reason TEXT     the customer's events across services
  portal dead-letters list [--topic T]         dead letters of every consumer group
  portal dead-letters show REF                 one, with its decoded event
                                               (REF: topic:partition:offset)
  portal dead-letters replay REF [REF ...]     back to the original topic (recorded: who, when)
  portal notifier dead-letters                 the notifier's dead deliveries
  portal notifier replay KEY [KEY ...]         queue them again
  portal lag                                   consumer lag per group and partition
  portal trace ID                              the spans of a trace (trace id or request id)

Configuration as for the console: PORTAL_KAFKA_BOOTSTRAP, PORTAL_DATABASE_URL (the
console's schema records replays, lookups and runs), PORTAL_TOPIC_PREFIX, PORTAL_SERVICES,
PORTAL_OPERATOR_SECRET, PORTAL_TRACE_FILE. The operator recorded is the login name of the
shell (or --operator). Exit codes: 0 done, 1 failed or refused, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path

from rich.console import Console as Terminal
from rich.table import Table

from console.adapters.kafka import ReplayRefused
from console.adapters.services import UpstreamError
from console.auth import Operator
from console.bootstrap import Service, build
from console.config import ConsoleSettings
from console.handlers import JOB_KINDS

out = Terminal()
err = Terminal(stderr=True)

# Services whose CLI has `rebuild` (a projection refilled from the event log / topics).
REBUILDS = {"loyalty": ["rebuild"]}


class Failed(Exception):
    """The command did not do what was asked (exit 1)."""


def _bin(name: str) -> str:
    """The service's CLI from the same environment as this one."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def rebuild(service: str) -> int:
    """Run the service's own rebuild, which draws the progress bar and the ETA."""
    command = [_bin(service), *REBUILDS[service]]
    return subprocess.call(command, env=os.environ)  # noqa: S603 - fixed command, no shell


async def _with_service(work: Callable[[Service], Awaitable[int]]) -> int:
    service = await build(ConsoleSettings(), log_stream=sys.stderr)  # stdout: the answer
    try:
        return await work(service)
    finally:
        await service.close()


def _operator(args: argparse.Namespace) -> Operator:
    name = args.operator or getpass.getuser()
    return Operator(f"cli:{name}", name)


async def _jobs(service: Service, args: argparse.Namespace) -> int:
    result = await service.console.run_job(args.kind, args.date, _operator(args))
    out.print(f"{args.kind} run for {args.date}: {result.get('announced')} events announced")
    return 0


async def _history(service: Service, args: argparse.Namespace) -> int:
    try:
        entries = await service.console.customer_history(
            args.customer_id, args.reason, _operator(args)
        )
    except ValueError as error:
        raise Failed(str(error)) from None
    table = Table("occurred at", "event", "source", "topic", "event id")
    for e in entries:
        table.add_row(e.occurred_at, e.event_type, e.source, f"{e.topic}:{e.offset}", e.event_id)
    out.print(table)
    out.print(f"{len(entries)} events")
    return 0


async def _dlq_list(service: Service, args: argparse.Namespace) -> int:
    letters = await service.console.dead_letters(args.topic)
    table = Table("ref", "reason", "original", "event", "replays")
    for d in letters:
        original = f"{d['original_topic']}:{d['original_partition']}:{d['original_offset']}"
        table.add_row(d["ref"], d["reason"], original, d["event_type"] or "-",
                      str(len(d["replays"])))  # fmt: skip
    out.print(table)
    out.print(f"{len(letters)} dead letters")
    return 0


async def _dlq_show(service: Service, args: argparse.Namespace) -> int:
    try:
        letter = await service.console.dead_letter(args.ref)
    except (ReplayRefused, ValueError) as error:
        raise Failed(str(error)) from None
    out.print_json(json.dumps(letter, default=str))
    return 0


async def _dlq_replay(service: Service, args: argparse.Namespace) -> int:
    results = await service.console.replay(args.refs, _operator(args))
    for r in results:
        out.print(f"{'replayed' if r.ok else 'REFUSED'} {r.ref}: {r.detail}")
    return 0 if all(r.ok for r in results) else 1


async def _notifier_list(service: Service, args: argparse.Namespace) -> int:
    letters, error = await service.console.notifier_dead_letters()
    if error is not None:
        raise Failed(error)
    table = Table("message key", "channel", "status", "error")
    for n in letters:
        table.add_row(str(n.get("message_key")), str(n.get("channel")), str(n.get("status")),
                      str(n.get("last_error") or ""))  # fmt: skip
    out.print(table)
    return 0


async def _notifier_replay(service: Service, args: argparse.Namespace) -> int:
    results = await service.console.notifier_replay(args.keys, _operator(args))
    for r in results:
        out.print(f"{'queued' if r.ok else 'REFUSED'} {r.ref}: {r.detail}")
    return 0 if all(r.ok for r in results) else 1


async def _lag(service: Service, args: argparse.Namespace) -> int:
    table = Table("group", "topic", "partition", "committed", "end", "lag")
    for lag in await service.console.kafka.lag():
        table.add_row(lag.group, lag.topic, str(lag.partition), str(lag.committed),
                      str(lag.end), str(lag.lag))  # fmt: skip
    out.print(table)
    return 0


async def _trace(service: Service, args: argparse.Namespace) -> int:
    if service.console.trace_file is None:
        raise Failed("no span file configured (PORTAL_TRACE_FILE)")
    spans = service.console.trace(args.id)
    if not spans:
        raise Failed(f"no spans for {args.id}")
    table = Table("start", "service", "span", "trace", "parent")
    for s in spans:
        table.add_row(s.start_time, s.service, s.name, s.trace_id, s.parent_span_id or "-")
    out.print(table)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="portal", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("--operator", help="name recorded for replays, lookups and runs")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rebuild_cmd = commands.add_parser("rebuild", help="rebuild a projection from the event log")
    rebuild_cmd.add_argument("service", choices=sorted(REBUILDS))

    jobs = commands.add_parser("jobs", help="loyalty jobs for a business date")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    run = jobs_commands.add_parser("run", help="run a loyalty job for a business date")
    run.add_argument("--kind", choices=JOB_KINDS, required=True)
    run.add_argument("--date", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    run.set_defaults(work=_jobs)

    history = commands.add_parser("history", help="a customer's events across services")
    history.add_argument("customer_id")
    history.add_argument("--reason", required=True, help="why (recorded with your name)")
    history.set_defaults(work=_history)

    dlq = commands.add_parser("dead-letters", help="Kafka dead letters: list, show, replay")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = dlq_commands.add_parser("list", help="dead letters of every consumer group")
    listing.add_argument("--topic", help="one dead-letter topic only")
    listing.set_defaults(work=_dlq_list)
    show = dlq_commands.add_parser("show", help="one dead letter with its decoded event")
    show.add_argument("ref", help="topic:partition:offset")
    show.set_defaults(work=_dlq_show)
    replay = dlq_commands.add_parser("replay", help="send dead letters to their original topic")
    replay.add_argument("refs", nargs="+", metavar="REF", help="topic:partition:offset")
    replay.set_defaults(work=_dlq_replay)

    notifier = commands.add_parser("notifier", help="the notifier's dead deliveries")
    notifier_commands = notifier.add_subparsers(
        dest="notifier_command", required=True, metavar="ACTION"
    )
    notifier_commands.add_parser("dead-letters", help="list them").set_defaults(work=_notifier_list)
    notifier_replay = notifier_commands.add_parser("replay", help="queue them again")
    notifier_replay.add_argument("keys", nargs="+", metavar="MESSAGE_KEY")
    notifier_replay.set_defaults(work=_notifier_replay)

    commands.add_parser("lag", help="consumer lag per group and partition").set_defaults(work=_lag)
    trace = commands.add_parser("trace", help="the spans of a trace")
    trace.add_argument("id", help="trace id or request id")
    trace.set_defaults(work=_trace)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "rebuild":
        sys.exit(rebuild(args.service))
    work: Callable[[Service, argparse.Namespace], Awaitable[int]] = args.work
    try:
        code = asyncio.run(_with_service(lambda service: work(service, args)))
    except (Failed, UpstreamError, ReplayRefused) as error:
        err.print(f"[red]failed:[/red] {error}")
        code = 1
    except (OSError, ConnectionError) as error:
        err.print(f"[red]failed:[/red] cannot reach the platform: {error}")
        code = 1
    sys.exit(code)
