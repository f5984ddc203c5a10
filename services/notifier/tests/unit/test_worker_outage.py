"""The delivery worker outlives a database outage (issue 13's chaos run: a PostgreSQL
restart ended a worker with asyncpg's InternalClientError, a connection that died while the
pool had it out): a claim that fails claims nothing and is tried again at the next poll."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from notifier.adapters.deliveries import DueNotifications
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


class DetachedOnLoss:
    """A pooled connection as asyncpg hands it out: once its connection is lost (a PostgreSQL
    restart) the pool takes it back and detaches the proxy - every call on it, `is_closed()`
    included, raises InterfaceError."""

    def __init__(self) -> None:
        self.lost = False

    def _alive(self, method: str) -> None:
        if self.lost:
            raise asyncpg.InterfaceError(
                f"cannot call Connection.{method}(): connection has been released back to the pool"
            )

    def is_closed(self) -> bool:
        self._alive("is_closed")
        return False

    async def fetchval(self, query: str) -> str:
        self._alive("fetchval")
        return "notifier_due_test"

    async def add_listener(self, channel: str, callback: Any) -> None:
        self._alive("add_listener")

    async def remove_listener(self, channel: str, callback: Any) -> None:
        self._alive("remove_listener")


class RestartingPool:
    def __init__(self) -> None:
        self.handed_out: list[DetachedOnLoss] = []
        self.listening_again = asyncio.Event()

    async def acquire(self) -> DetachedOnLoss:
        if self.handed_out:
            self.listening_again.set()
        self.handed_out.append(DetachedOnLoss())
        return self.handed_out[-1]

    async def release(self, conn: DetachedOnLoss) -> None:
        return None  # asyncpg: releasing a detached proxy does nothing

    def restart(self) -> None:
        for conn in self.handed_out:
            conn.lost = True


class NothingDue:
    def __init__(self) -> None:
        self.claims = 0
        self.claimed = asyncio.Event()

    async def execute(self, handler: Any, command: object) -> object:
        self.claims += 1
        self.claimed.set()
        return SimpleNamespace(attempts=[])


async def test_nt4_the_worker_outlives_the_loss_of_its_wakeup_listeners_connection() -> None:
    """Issue 13's chaos runs: `DueNotifications.listening()` asked the detached proxy
    `is_closed()` and the InterfaceError ended `DeliveryWorker.run`."""
    pool = RestartingPool()
    transactions = NothingDue()
    dispatch = SimpleNamespace(claim=None, claimed=lambda claim: None)
    wakeups = DueNotifications(pool)  # type: ignore[arg-type]
    worker = DeliveryWorker(dispatch, transactions, poll_seconds=0.01, wakeups=wakeups)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(transactions.claimed.wait(), timeout=30)

    pool.restart()
    await asyncio.wait_for(pool.listening_again.wait(), timeout=30)
    transactions.claimed.clear()
    await asyncio.wait_for(transactions.claimed.wait(), timeout=30)

    assert not running.done(), "the worker died with the listener's connection"
    stop.set()
    await running
    assert len(pool.handed_out) == 2
