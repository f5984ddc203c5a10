"""The delivery worker outlives a database outage (issue 13's chaos run: a PostgreSQL
restart ended a worker with asyncpg's InternalClientError, a connection that died while the
pool had it out): a claim that fails claims nothing and is tried again at the next poll."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from notifier.entrypoints.worker import DeliveryWorker
from notifier.handlers.dispatch import ClaimDue


class DatabaseAwayOnce:
    def __init__(self, trouble: Exception) -> None:
        self.trouble = trouble
        self.calls: list[object] = []
        self.again = asyncio.Event()

    async def execute(self, handler: Any, command: object) -> object:
        self.calls.append(command)
        if len(self.calls) == 1:
            raise self.trouble
        self.again.set()
        return SimpleNamespace(attempts=[])


@pytest.mark.parametrize(
    "trouble",
    [
        asyncpg.InternalClientError("release() called on a free connection holder"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError("the database is restarting"),
    ],
)
async def test_nt4_a_claim_that_finds_the_database_away_is_tried_again(trouble: Exception) -> None:
    transactions = DatabaseAwayOnce(trouble)
    dispatch = SimpleNamespace(claim=None, claimed=lambda claim: None)
    worker = DeliveryWorker(dispatch, transactions, poll_seconds=0.01)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(transactions.again.wait(), timeout=30)
    assert not running.done(), "the worker died with the database"
    stop.set()
    await running
    assert all(isinstance(call, ClaimDue) for call in transactions.calls)
