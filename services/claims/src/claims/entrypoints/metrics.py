"""OPS-2: the claims-by-status gauge (`portal_claims{status}`), refreshed from the database.

A loop of the serving process: every `every` seconds one read-only transaction counts the
claims per status (`ClaimsHandlers.count_by_status`) and sets every status's figure, 0
for a status no claim is in, so a status that emptied does not keep its last count. A
failed round is logged and the next one tries again (servicekit.metrics.refresh_loop).
"""

from __future__ import annotations

from typing import TypeVar

from servicekit.metrics import CLAIMS_BY_STATUS, refresh_loop
from servicekit.runner import Loop
from servicekit.unit_of_work import Transactions

from claims.bootstrap import Service
from claims.commands import CountByStatus
from claims.handlers import ClaimsHandlers
from claims.unit_of_work import ClaimsUnitOfWork

U = TypeVar("U", bound=ClaimsUnitOfWork)


async def refresh_claims_by_status(transactions: Transactions[U], handlers: ClaimsHandlers) -> None:
    """One round: every status's claims counted and set on the gauge."""
    counts = await transactions.execute(handlers.count_by_status, CountByStatus())
    for status, claims in counts.items():
        CLAIMS_BY_STATUS.labels(status.value).set(claims)


def claims_by_status(service: Service, every: float = 15.0) -> Loop:
    """The service loop refreshing the gauge every `every` seconds."""

    async def claims_by_status() -> None:
        await refresh_claims_by_status(service.transactions, service.handlers)

    return refresh_loop(claims_by_status, every)
