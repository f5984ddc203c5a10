"""CL-3: the overdue slip job. A loop of the serving process: every few minutes it finds
the claims whose expected completion date passed (by the service clock's Berlin date)
while the service level runs, and slips each in a transaction of its own
(`ClaimsHandlers.slip_if_overdue`): the date moves, the customer is told.

Every instance runs it; two firing at once are harmless: the claim is read locked and
decided again on what is stored, and the stream version refuses a second announcement
of the same slip. A failed round is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TypeVar

from servicekit.logging import get_logger
from servicekit.runner import Loop
from servicekit.unit_of_work import Transactions

from claims import commands as c
from claims.bootstrap import Service
from claims.handlers import ClaimsHandlers
from claims.unit_of_work import ClaimsUnitOfWork

U = TypeVar("U", bound=ClaimsUnitOfWork)
log = get_logger(__name__)


async def slip_overdue_claims(
    transactions: Transactions[U], handlers: ClaimsHandlers, batch: int = 500
) -> int:
    """One round: every overdue claim slipped once; returns how many this run slipped
    (those another run slipped meanwhile are not counted)."""
    slipped = 0
    while True:
        due = await transactions.execute(handlers.overdue_claims, c.FindOverdueClaims(batch))
        moved = 0
        for claim_id in due:
            change = await transactions.execute(
                handlers.slip_if_overdue, c.SlipOverdueClaim(claim_id)
            )
            moved += change is not None
        slipped += moved
        # A full batch may have more behind it; a batch none of which moved has not (it
        # would be found again).
        if len(due) < batch or moved == 0:
            return slipped


def overdue_slips(service: Service) -> Loop:
    """The service loop running a round every `PORTAL_OVERDUE_CHECK_SECONDS`."""
    every = service.settings.overdue_check_seconds

    async def overdue_slips(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                slipped = await slip_overdue_claims(service.transactions, service.handlers)
                if slipped:
                    log.info("overdue_claims_slipped", claims=slipped)
            except Exception as exc:
                log.warning("overdue_slip_round_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    return overdue_slips
