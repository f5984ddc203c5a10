"""The one place where the loyalty service's adapters are wired to its handlers.

Never imports an entrypoint: the entrypoints (API, stream subscribers, scheduler, CLI)
take the `Service` built here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx
from servicekit.clock import Clock
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.runner import Loop
from servicekit.runtime import Runtime
from servicekit.stream import EventStream
from servicekit.tracing import traced_client
from servicekit.unit_of_work import Transactions

from loyalty.adapters.postgres import PostgresLoyaltyUnitOfWork
from loyalty.config import LoyaltySettings
from loyalty.handlers import Loyalty
from loyalty.unit_of_work import LoyaltyUnitOfWork

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class Service:
    runtime: Runtime
    settings: LoyaltySettings
    loyalty: Loyalty
    transactions: Transactions[LoyaltyUnitOfWork]
    stream: EventStream[LoyaltyUnitOfWork]
    http: httpx.AsyncClient
    background: list[Loop] = field(default_factory=list)  # e.g. the daily runs (entrypoints)

    def loops(self) -> list[Loop]:
        return [
            *self.runtime.event_loops(self.stream),
            *self.background,
        ]

    async def close(self) -> None:
        await self.http.aclose()
        await self.runtime.close()


def unit_of_work(conn: Connection, store: EventStore) -> LoyaltyUnitOfWork:
    return PostgresLoyaltyUnitOfWork(conn, store)


async def build(settings: LoyaltySettings, clock: Clock | None = None) -> Service:
    runtime = await Runtime.start(settings, MIGRATIONS, clock)
    transactions = runtime.transactions(unit_of_work)
    return Service(
        runtime=runtime,
        settings=settings,
        loyalty=Loyalty(settings.programme(), runtime.clock),
        transactions=transactions,
        stream=runtime.stream(transactions),
        http=traced_client(),
    )
