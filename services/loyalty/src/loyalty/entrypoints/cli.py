"""Operator CLI of the loyalty service (OPS-3).

loyalty serve                                  API, relay, consumer, daily runs
loyalty run --kind monthly --date 2026-04-01   a run for a business date (not after today)
loyalty rebuild                                refill the projections from the topics
loyalty history CUSTOMER_ID                    the customer's facts in business order
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from servicekit.runtime import serve_service

from loyalty.bootstrap import Service, build
from loyalty.config import LoyaltySettings
from loyalty.entrypoints.api import create_app
from loyalty.entrypoints.rebuild import rebuild_facts
from loyalty.entrypoints.scheduler import daily_runs
from loyalty.entrypoints.stream import INPUT_TOPICS, subscribe
from loyalty.handlers import GetHistory
from loyalty.jobs import RunKind, RunRefused, run_ledger_job, run_moment

console = Console()

EXIT_REFUSED = 2


def serving(service: Service) -> Service:
    """The service as `serve` runs it: subscribers registered, daily runs if configured."""
    subscribe(service.stream, service.loyalty)
    if service.settings.run_scheduler:
        service.background.append(daily_runs(service))
    return service


async def _serve() -> None:
    await serve_service(serving(await build(LoyaltySettings())), create_app)


async def _run(kind: RunKind, business_date: date) -> int:
    service = await build(LoyaltySettings())
    try:
        try:
            as_of = run_moment(kind, business_date, service.runtime.clock.now())
        except RunRefused as refused:
            console.print(f"[red]refused:[/red] {refused}")
            return EXIT_REFUSED
        with Progress(*_columns(), console=console) as bar:
            task = bar.add_task(f"{kind.value} run {business_date}", total=None)
            sent = await run_ledger_job(
                service.transactions, service.loyalty, as_of,
                progress=lambda n: bar.advance(task, n),
            )  # fmt: skip
        console.print(
            f"{kind.value} run for {business_date}: {sent} events queued in the outbox;"
            " the service's relay publishes them"
        )
        return 0
    finally:
        await service.close()


async def _rebuild() -> int:
    service = await build(LoyaltySettings())
    try:
        topics = [service.runtime.topic(t) for t in INPUT_TOPICS]
        with Progress(*_columns(), console=console) as bar:
            task = bar.add_task("replaying events", total=None)
            replayed = await rebuild_facts(
                service.transactions, service.loyalty, service.settings.kafka_bootstrap, topics,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
        console.print(f"rebuilt the loyalty projections from {replayed} events")
        return 0
    finally:
        await service.close()


async def _history(customer_id: str) -> int:
    service = await build(LoyaltySettings())
    try:
        facts = await service.transactions.execute(service.loyalty.history, GetHistory(customer_id))
        table = Table("occurred at", "fact", "event id")
        for fact in facts:
            table.add_row(fact.occurred_at.isoformat(), type(fact).__name__, fact.event_id)
        console.print(table)
        return 0
    finally:
        await service.close()


def _columns() -> tuple[str | ProgressColumn, ...]:
    return ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="loyalty", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve")
    run = commands.add_parser("run")
    run.add_argument("--kind", type=RunKind, choices=list(RunKind), required=True)
    run.add_argument("--date", type=date.fromisoformat, required=True)
    commands.add_parser("rebuild")
    history = commands.add_parser("history")
    history.add_argument("customer_id")
    args = parser.parse_args(argv)
    match args.command:
        case "serve":
            asyncio.run(_serve())
        case "run":
            sys.exit(asyncio.run(_run(args.kind, args.date)))
        case "rebuild":
            sys.exit(asyncio.run(_rebuild()))
        case "history":
            sys.exit(asyncio.run(_history(args.customer_id)))
