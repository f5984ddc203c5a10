"""The one place where the claims service's adapters are wired to its handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx
from servicekit.clock import Clock
from servicekit.runner import Loop
from servicekit.runtime import Runtime
from servicekit.stream import EventStream
from servicekit.tracing import traced_client
from servicekit.unit_of_work import Transactions
from servicekit.uploads import UploadPolicy

from claims.adapters.postgres import PostgresClaimsUnitOfWork
from claims.config import ClaimsSettings
from claims.domain.calendar import WorkingDays
from claims.domain.lifecycle import Schedule
from claims.handlers import ClaimsHandlers

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class Service:
    runtime: Runtime
    handlers: ClaimsHandlers
    transactions: Transactions[PostgresClaimsUnitOfWork]
    stream: EventStream[PostgresClaimsUnitOfWork]
    settings: ClaimsSettings
    http: httpx.AsyncClient
    background: list[Loop] = field(default_factory=list)  # e.g. the metrics (entrypoints)

    def loops(self) -> list[Loop]:
        return [
            *self.runtime.event_loops(self.stream),
            *self.background,
        ]

    async def close(self) -> None:
        await self.http.aclose()
        await self.runtime.close()


def handlers(settings: ClaimsSettings, clock: Clock) -> ClaimsHandlers:
    schedule = Schedule(
        WorkingDays(settings.holiday_state), settings.levels(), settings.overdue_extension_days
    )
    return ClaimsHandlers(clock, schedule, UploadPolicy(max_bytes=settings.max_upload_bytes))


async def build(settings: ClaimsSettings, clock: Clock | None = None) -> Service:
    runtime = await Runtime.start(settings, MIGRATIONS, clock)
    transactions = runtime.transactions(PostgresClaimsUnitOfWork)
    return Service(
        runtime, handlers(settings, runtime.clock), transactions,
        runtime.stream(transactions), settings, traced_client(),
    )  # fmt: skip
