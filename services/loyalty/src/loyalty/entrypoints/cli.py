"""Operator CLI of the loyalty service (OPS-3).

loyalty serve                                  API, relay, consumer, daily runs
loyalty run --kind monthly --date 2026-04-01   a run for a business date
loyalty rebuild                                refill the projections from the topics
loyalty history CUSTOMER_ID                    the customer's facts in business order
"""

from __future__ import annotations

import argparse
import asyncio
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

from loyalty.adapters.fact_store import facts_of
from loyalty.bootstrap import INPUT_TOPICS, build, create_http_app
from loyalty.config import LoyaltySettings
from loyalty.jobs import RunKind, run_ledger_job, run_moment
from loyalty.rebuild import rebuild_facts

console = Console()


async def _serve() -> None:
    await serve_service(await build(LoyaltySettings()), create_http_app)


async def _run(kind: RunKind, business_date: date) -> None:
    service = await build(LoyaltySettings())
    try:
        as_of = run_moment(kind, business_date)
        with Progress(*_columns(), console=console) as bar:
            task = bar.add_task(f"{kind.value} run {business_date}", total=None)
            sent = await run_ledger_job(
                service.runtime.pool, service.loyalty, as_of,
                progress=lambda n: bar.advance(task, n),
            )  # fmt: skip
        console.print(
            f"{kind.value} run for {business_date}: {sent} events queued in the outbox;"
            " the service's relay publishes them"
        )
    finally:
        await service.close()


async def _rebuild() -> None:
    settings = LoyaltySettings()
    service = await build(settings)
    try:
        topics = [service.runtime.topic(t) for t in INPUT_TOPICS]
        with Progress(*_columns(), console=console) as bar:
            task = bar.add_task("replaying events", total=None)
            replayed = await rebuild_facts(
                service.runtime.pool, settings.kafka_bootstrap, topics,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
        console.print(f"rebuilt the loyalty projections from {replayed} events")
    finally:
        await service.close()


async def _history(customer_id: str) -> None:
    service = await build(LoyaltySettings())
    try:
        async with service.runtime.pool.acquire() as conn:
            facts = (await facts_of(conn, [customer_id])).get(customer_id, [])
        table = Table("occurred at", "fact", "event id")
        for fact in sorted(facts, key=lambda f: (f.occurred_at, f.event_id)):
            table.add_row(fact.occurred_at.isoformat(), type(fact).__name__, fact.event_id)
        console.print(table)
    finally:
        await service.close()


def _columns() -> tuple[str | ProgressColumn, ...]:
    return ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def main() -> None:
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
    args = parser.parse_args()
    match args.command:
        case "serve":
            asyncio.run(_serve())
        case "run":
            asyncio.run(_run(args.kind, args.date))
        case "rebuild":
            asyncio.run(_rebuild())
        case "history":
            asyncio.run(_history(args.customer_id))
