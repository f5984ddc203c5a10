"""The daily runs' loop outlives a database outage (issue 13): a failed ledger run is
logged and tried again at the next check, never the end of the loop (and the process)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from loyalty.entrypoints.scheduler import daily_runs
from loyalty.handlers import ListCustomers
from servicekit.clock import FixedClock


class DatabaseAwayOnce:
    """Transactions whose first call finds the database gone; later ones find no customer."""

    def __init__(self) -> None:
        self.calls: list[object] = []
        self.retried = asyncio.Event()

    async def execute(self, handler: Any, command: object) -> object:
        self.calls.append(command)
        if len(self.calls) == 1:
            raise ConnectionRefusedError("the database is restarting")
        self.retried.set()
        return []


async def test_a_ledger_run_that_finds_the_database_away_is_tried_again_at_the_next_check() -> None:
    transactions = DatabaseAwayOnce()
    service = SimpleNamespace(
        runtime=SimpleNamespace(clock=FixedClock(datetime(2027, 3, 1, 9, tzinfo=UTC))),
        transactions=transactions,
        loyalty=SimpleNamespace(customers=None, announce=None),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(daily_runs(service, check_every_seconds=0.01)(stop))  # type: ignore[arg-type]
    await asyncio.wait_for(transactions.retried.wait(), timeout=30)
    assert not running.done(), "the loop died with the database"
    stop.set()
    await running
    assert [type(c) for c in transactions.calls] == [ListCustomers, ListCustomers]
