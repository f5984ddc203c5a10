"""The daily runs: once per Berlin day, the ledger job as of that day's 00:00 (every run
of the calendar falls there). Two schedulers firing together are harmless (jobs.py). A run
that fails (the database away) is logged and tried again at the next check: the loop, and
with it the process, outlives the outage."""

from __future__ import annotations

import asyncio
import contextlib

from servicekit.clock import berlin_date, start_of_berlin_day
from servicekit.logging import get_logger
from servicekit.runner import Loop

from loyalty.bootstrap import Service
from loyalty.jobs import run_ledger_job

log = get_logger(__name__)


def daily_runs(service: Service, check_every_seconds: float = 60.0) -> Loop:
    async def run_daily(stop: asyncio.Event) -> None:
        last_run = None
        while not stop.is_set():
            today = berlin_date(service.runtime.clock.now())
            if today != last_run:
                try:
                    sent = await run_ledger_job(
                        service.transactions, service.loyalty, start_of_berlin_day(today)
                    )
                except Exception as exc:  # e.g. the database away: the next check tries again
                    log.warning("ledger_job_failed", business_date=today.isoformat(),
                                error=type(exc).__name__)  # fmt: skip
                else:
                    log.info("ledger_job_done", business_date=today.isoformat(), announced=sent)
                    last_run = today
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=check_every_seconds)

    return run_daily
