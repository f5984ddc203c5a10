"""Operator CLI of the notifier (OPS-3).

notifier serve                                    consumer, delivery worker, operator API
notifier deliveries [--status S] [--customer C]   deliveries, newest first
notifier log MESSAGE_KEY                          one delivery and what happened to it
notifier dead-letters [--customer C]              deliveries that gave up (NT-4)
notifier replay MESSAGE_KEY [MESSAGE_KEY ...]     dead letters back to the queue
notifier stats                                    deliveries per channel and status

The same settings (PORTAL_* variables) as the service; nothing here shows message content.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.table import Table
from servicekit.runtime import serve_service

from notifier.adapters.deliveries import DueNotifications
from notifier.bootstrap import Service, build
from notifier.config import NotifierSettings
from notifier.domain.delivery import DeliveryStatus
from notifier.entrypoints.api import create_app
from notifier.entrypoints.stream import subscribe
from notifier.entrypoints.worker import DeliveryWorker
from notifier.handlers import reports
from notifier.handlers.dispatch import NotReplayable, ReplayDelivery, UnknownDelivery
from notifier.unit_of_work import DeliveryRecord

console = Console()


def prepare_to_serve(service: Service) -> Service:
    """The stream subscribers and (unless switched off) the delivery worker."""
    subscribe(service.stream, service.intake)
    if service.settings.run_worker:
        worker = DeliveryWorker(
            service.dispatch,
            service.transactions,
            concurrency=service.settings.worker_concurrency,
            poll_seconds=service.settings.worker_poll_seconds,
            wakeups=DueNotifications(service.runtime.pool),
        )
        service.workers.append(worker.run)
    return service


async def _serve() -> None:
    service = prepare_to_serve(await build(NotifierSettings()))
    await serve_service(service, create_app)


async def _with_service(work: Callable[[Service], Awaitable[int]]) -> int:
    service = await build(NotifierSettings())
    try:
        return await work(service)
    finally:
        await service.close()


def _when(value: object) -> str:
    return "" if value is None else str(value)[:19]


def _table(records: list[DeliveryRecord]) -> Table:
    table = Table("message key", "customer", "kind", "channel", "to", "status", "tries",
                  "updated", "last error")  # fmt: skip
    for r in records:
        d = r.delivery
        table.add_row(
            d.message_key, r.customer_id, r.kind.value, r.channel.value, r.recipient,
            d.status.value, str(d.attempts), _when(d.updated_at), d.last_error or "",
        )  # fmt: skip
    return table


async def _deliveries(
    service: Service, status: DeliveryStatus | None, customer: str | None, limit: int
) -> int:
    query = reports.FindDeliveries(status=status, customer_id=customer, limit=limit)
    console.print(_table(await service.transactions.execute(reports.find_deliveries, query)))
    return 0


async def _log(service: Service, message_key: str) -> int:
    try:
        found = await service.transactions.execute(reports.delivery_with_log, message_key)
    except UnknownDelivery:
        console.print(f"no delivery with key {message_key}")
        return 1
    console.print(_table([found.record]))
    table = Table("at", "status", "attempt", "detail")
    for entry in found.log:
        table.add_row(_when(entry.at), entry.status, str(entry.attempt), entry.detail or "")
    console.print(table)
    return 0


async def _replay(service: Service, keys: list[str]) -> int:
    failures = 0
    for key in keys:
        try:
            await service.transactions.execute(
                service.dispatch.replay, ReplayDelivery(key, "operator-cli")
            )
        except NotReplayable as refusal:
            console.print(f"{key}: not replayed: {refusal}")
            failures += 1
        except UnknownDelivery:
            console.print(f"{key}: no such delivery")
            failures += 1
        else:
            console.print(f"{key}: queued again; the running service's worker sends it")
    return 1 if failures else 0


async def _stats(service: Service) -> int:
    counts = await service.transactions.execute(reports.delivery_counts, None)
    statuses = [s.value for s in DeliveryStatus]
    table = Table("channel", *statuses)
    for channel, by_status in sorted(counts.items()):
        table.add_row(channel, *(str(by_status.get(s, 0)) for s in statuses))
    console.print(table)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="notifier", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve")
    listing = commands.add_parser("deliveries")
    listing.add_argument("--status", type=DeliveryStatus, choices=list(DeliveryStatus))
    listing.add_argument("--customer")
    listing.add_argument("--limit", type=int, default=100)
    log = commands.add_parser("log")
    log.add_argument("message_key")
    dead = commands.add_parser("dead-letters")
    dead.add_argument("--customer")
    dead.add_argument("--limit", type=int, default=100)
    replay = commands.add_parser("replay")
    replay.add_argument("message_keys", nargs="+")
    commands.add_parser("stats")
    args = parser.parse_args()
    match args.command:
        case "serve":
            asyncio.run(_serve())
            return
        case "deliveries":
            code = asyncio.run(
                _with_service(lambda s: _deliveries(s, args.status, args.customer, args.limit))
            )
        case "log":
            code = asyncio.run(_with_service(lambda s: _log(s, args.message_key)))
        case "dead-letters":
            code = asyncio.run(
                _with_service(
                    lambda s: _deliveries(s, DeliveryStatus.DEAD, args.customer, args.limit)
                )
            )
        case "replay":
            code = asyncio.run(_with_service(lambda s: _replay(s, args.message_keys)))
        case _:
            code = asyncio.run(_with_service(_stats))
    raise SystemExit(code)
