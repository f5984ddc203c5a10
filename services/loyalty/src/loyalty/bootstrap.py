"""The one place where the loyalty service's adapters are wired to its handlers."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from contracts_schemas import topics
from fastapi import FastAPI
from servicekit.clock import Clock, berlin_date, start_of_berlin_day
from servicekit.logging import get_logger
from servicekit.runner import Loop
from servicekit.runtime import Runtime

from loyalty.config import LoyaltySettings
from loyalty.handlers import Loyalty
from loyalty.jobs import run_ledger_job

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
FACTS_GROUP = "loyalty.facts"
INPUT_TOPICS = (
    topics.CONTRACTS_POLICY,
    topics.IDENTITY_CUSTOMER,
    topics.DOCUMENTS_MAILBOX,
    topics.CLAIMS_CLAIM,
    topics.LOYALTY_ACCOUNT,
)

log = get_logger(__name__)


@dataclass
class Service:
    runtime: Runtime
    loyalty: Loyalty
    settings: LoyaltySettings
    http: httpx.AsyncClient

    def loops(self) -> list[Loop]:
        loops = [
            self.runtime.relay_loop(),
            self.runtime.consumer_loop(FACTS_GROUP, INPUT_TOPICS, self.loyalty.record_facts),
        ]
        if self.settings.run_scheduler:
            loops.append(self.daily_runs)
        return loops

    async def daily_runs(self, stop: asyncio.Event) -> None:
        """Once per Berlin day, the ledger job as of that day's 00:00 (all runs fall there)."""
        last_run = None
        while not stop.is_set():
            today = berlin_date(self.runtime.clock.now())
            if today != last_run:
                sent = await run_ledger_job(
                    self.runtime.pool, self.loyalty, start_of_berlin_day(today)
                )
                log.info("ledger_job_done", business_date=today.isoformat(), announced=sent)
                last_run = today
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=60)

    async def close(self) -> None:
        await self.http.aclose()
        await self.runtime.close()


async def build(settings: LoyaltySettings, clock: Clock | None = None) -> Service:
    runtime = await Runtime.start(settings, MIGRATIONS, clock)
    loyalty = Loyalty(runtime.store, settings.programme())
    return Service(runtime, loyalty, settings, httpx.AsyncClient())


def create_http_app(service: Service) -> FastAPI:
    from loyalty.entrypoints.api import register

    return service.runtime.http_app(service, register, customer_tokens=service.http)
