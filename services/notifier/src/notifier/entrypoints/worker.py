"""The delivery worker: a loop of its own, any number of instances (NT-4, NT-6).

It keeps up to `concurrency` sends in flight (the size of the channels' session pools)
and claims only what it can start at once, so a lease never ticks while a message waits
in a local queue. Each attempt: `claim` (one transaction) -> `send` (no transaction) ->
record (one transaction, right after the provider answered).

- A slot is held from the claim until the outcome is written: a worker never has more
  than `concurrency` deliveries SENDING (the crash window, README).
- A free slot is filled at once: the next claim starts as soon as a slot is free (not
  when half of them are), for as many as are free; claims overlap the sends in flight,
  so under load each claim takes what freed up meanwhile.
- When a claim found less than it asked for (nothing more is due), the worker sleeps until
  deliveries are queued (`wakeups`, PostgreSQL NOTIFY at the commit of the intake) or the
  poll interval passed (retries falling due, missed notifications), whichever is first.
- Recording is a group commit: an outcome is written at once when no write is running;
  outcomes that complete while one runs are written together in the next round, in one
  statement (`Dispatch.record_all`) - no outcome waits for more than the write before it.

On stop it claims nothing more and lets the sends in flight finish and be recorded (they
are bounded by the channels' timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol

import asyncpg
from servicekit.logging import get_logger
from servicekit.unit_of_work import Transactions

from notifier.handlers.dispatch import Attempt, ClaimDue, Dispatch, Outcome
from notifier.unit_of_work import NotifierUnitOfWork

log = get_logger(__name__)

# A database away: refused/reset, closed under a query, or asyncpg's pool confused by a
# connection that died while in use (InternalClientError, seen when PostgreSQL restarts).
_DB_TROUBLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


class Wakeups(Protocol):
    """Set when deliveries may have become due (`adapters.deliveries.DueNotifications`)."""

    due: asyncio.Event

    async def listening(self) -> bool: ...

    async def close(self) -> None: ...


class DeliveryWorker:
    def __init__(
        self,
        dispatch: Dispatch,
        transactions: Transactions[NotifierUnitOfWork],
        *,
        concurrency: int = 8,
        poll_seconds: float = 0.5,
        wakeups: Wakeups | None = None,
    ) -> None:
        self.dispatch = dispatch
        self.transactions = transactions
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.wakeups = wakeups
        self._pending: list[tuple[Outcome, asyncio.Future[bool]]] = []
        self._writing = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        sending: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                free = self.concurrency - len(sending)
                if free <= 0:
                    await _first_of(stop, sending)
                    continue
                due = await self._due_event()
                if due is not None:
                    due.clear()  # a notification from now on wakes the wait below
                attempts = await self._claim(free)
                if attempts is None:  # the database is away: not before the next poll
                    await _first_of(stop, set(), wait_for=self.poll_seconds)
                    continue
                for attempt in attempts:
                    task = asyncio.create_task(self._attempt(attempt))
                    sending.add(task)
                    task.add_done_callback(sending.discard)
                if len(attempts) < free:
                    # Nothing more is due now: until deliveries are queued, or the poll.
                    await _first_of(stop, set(), due, wait_for=self.poll_seconds)
        finally:
            if sending:
                await asyncio.gather(*sending, return_exceptions=True)
            if self.wakeups is not None:
                await self.wakeups.close()

    async def _due_event(self) -> asyncio.Event | None:
        if self.wakeups is None or not await self.wakeups.listening():
            return None
        return self.wakeups.due

    async def _claim(self, limit: int) -> list[Attempt] | None:
        """The attempts started, or None when the claim failed."""
        try:
            claim = await self.transactions.execute(self.dispatch.claim, ClaimDue(limit))
        except (*_DB_TROUBLE, asyncpg.PostgresError) as trouble:
            # Nothing was claimed (the transaction rolled back): try again later.
            log.warning("claim_failed", error=repr(trouble))
            return None
        self.dispatch.claimed(claim)
        return claim.attempts

    async def _attempt(self, attempt: Attempt) -> None:
        """Send, then record: the slot is held until the outcome is written, so no more
        than `concurrency` deliveries of this worker are ever SENDING (the crash window)."""
        try:
            outcome = await self.dispatch.send(attempt)
            self.dispatch.recorded(outcome, await self._record(outcome))
        except Exception:
            # Not recorded: the lease runs out and the delivery is tried again.
            log.exception("attempt_not_recorded", message_key=attempt.message.message_key)

    async def _record(self, outcome: Outcome) -> bool:
        """Group commit: join the next round; the first waiter to get the lock writes every
        outcome pending by then in one transaction."""
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, written))
        async with self._writing:
            if not written.done():
                round_, self._pending = self._pending, []
                await self._write_round(round_)
        return await written

    async def _write_round(self, round_: list[tuple[Outcome, asyncio.Future[bool]]]) -> None:
        try:
            results = await self._write([outcome for outcome, _ in round_])
        except Exception as error:
            for _, future in round_:
                future.set_exception(error)
            return
        except BaseException:
            # This writer was cancelled: the next waiter writes the round.
            self._pending[:0] = round_
            raise
        for (_, future), result in zip(round_, results, strict=True):
            future.set_result(result)

    async def _write(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Record right away; ride out a short database outage rather than widen the crash
        window: give up only when the first lease of the round is about to run out."""
        leases = [o.before.lease_until for o in outcomes]
        assert all(lease is not None for lease in leases)
        lease_until = min(lease for lease in leases if lease is not None)
        pause = 0.1
        while True:
            try:
                return await self.transactions.execute(self.dispatch.record_all, outcomes)
            except _DB_TROUBLE as trouble:
                left = lease_until - self.dispatch.clock.now()
                if left < timedelta(seconds=pause * 2):
                    keys = [o.message.message_key for o in outcomes]
                    log.error("result_not_recorded", message_keys=keys)
                    raise
                log.warning("record_retrying", outcomes=len(outcomes), error=repr(trouble))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)


async def _first_of(
    stop: asyncio.Event,
    tasks: set[asyncio.Task[None]],
    event: asyncio.Event | None = None,
    *,
    wait_for: float | None = None,
) -> None:
    """Until `stop`, one of `tasks` ends, `event` is set or `wait_for` seconds passed."""
    if event is not None and event.is_set():
        return
    waiters = [asyncio.create_task(stop.wait())]
    if event is not None:
        waiters.append(asyncio.create_task(event.wait()))
    try:
        first = asyncio.FIRST_COMPLETED
        await asyncio.wait({*waiters, *tasks}, timeout=wait_for, return_when=first)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
