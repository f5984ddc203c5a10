"""The delivery worker: a loop of its own, any number of instances (NT-4, NT-6).

It keeps up to `concurrency` sends in flight and claims only what it can start at once,
so a lease never ticks while a message waits in a local queue. Each attempt: `claim`
(one transaction) -> `send` (no transaction) -> record (one transaction, right after the
provider answered). Recording is a group commit: an outcome is written at once when no
write is running; outcomes that complete while one runs are written together in the next
round, in one statement (`Dispatch.record_all`) - no outcome waits for more than the write
before it. On stop it claims nothing more and lets the sends in flight finish and be
recorded (they are bounded by the channels' timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

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


class DeliveryWorker:
    def __init__(
        self,
        dispatch: Dispatch,
        transactions: Transactions[NotifierUnitOfWork],
        *,
        concurrency: int = 8,
        poll_seconds: float = 0.5,
    ) -> None:
        self.dispatch = dispatch
        self.transactions = transactions
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self._refill_at = max(1, concurrency // 2)
        self._pending: list[tuple[Outcome, asyncio.Future[bool]]] = []
        self._writing = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        in_flight: set[asyncio.Task[Outcome | None]] = set()
        try:
            while not stop.is_set():
                free = self.concurrency - len(in_flight)
                if free < self._refill_at and in_flight:
                    await _first_of(stop, in_flight, wait_for=None)
                    continue
                attempts = await self._claim(free)
                for attempt in attempts:
                    task = asyncio.create_task(self._attempt(attempt))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if attempts and len(attempts) == free:
                    # A full claim: more may be due; refill as soon as sends complete.
                    await _first_of(stop, in_flight, wait_for=None)
                else:
                    # Nothing more is due now: look again after the poll interval.
                    await _first_of(stop, set(), wait_for=self.poll_seconds)
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _claim(self, limit: int) -> list[Attempt]:
        try:
            claim = await self.transactions.execute(self.dispatch.claim, ClaimDue(limit))
        except (*_DB_TROUBLE, asyncpg.PostgresError) as trouble:
            # Nothing was claimed (the transaction rolled back): try again later.
            log.warning("claim_failed", error=repr(trouble))
            return []
        self.dispatch.claimed(claim)
        return claim.attempts

    async def _attempt(self, attempt: Attempt) -> Outcome | None:
        try:
            outcome = await self.dispatch.send(attempt)
            self.dispatch.recorded(outcome, await self._record(outcome))
            return outcome
        except Exception:
            # Not recorded: the lease runs out and the delivery is tried again.
            log.exception("attempt_not_recorded", message_key=attempt.message.message_key)
            return None

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
    stop: asyncio.Event, tasks: set[asyncio.Task[Outcome | None]], wait_for: float | None
) -> None:
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({stopper, *tasks}, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
