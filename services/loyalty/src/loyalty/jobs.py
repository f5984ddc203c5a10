"""The loyalty runs for a business date (LOY-2 monthly, LOY-3 January, LOY-5 expiry).

Balances follow from facts and the calendar alone, so a run does not compute points: it
announces, for every customer, what the calendar up to that date has credited, expired
or forfeited, and the expiry warnings due, each once. A run goes through the customers
in chunks, one transaction each (`Loyalty.announce`); two schedulers firing together are
harmless: one chunk is announced at a time, and each announcement is recorded once per
customer. A run for a date after the service's business date is refused: what it would
publish could still be made wrong by facts that have not happened yet.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum
from typing import TypeVar

from servicekit.clock import berlin_date, start_of_berlin_day
from servicekit.metrics import LOYALTY_POINTS
from servicekit.unit_of_work import Transactions

from loyalty.handlers import Announce, Announced, ListCustomers, Loyalty
from loyalty.unit_of_work import LoyaltyUnitOfWork

U = TypeVar("U", bound=LoyaltyUnitOfWork)


EARLIEST_RUN = date(1970, 1, 1)  # the calendar arithmetic of older dates is not supported


class RunKind(StrEnum):
    MONTHLY = "monthly"
    JANUARY = "january"
    EXPIRY = "expiry"


class RunRefused(ValueError):
    """The run cannot take place for that date; the message says why (for operators)."""


def run_moment(kind: RunKind, business_date: date, now: datetime) -> datetime:
    """00:00 Europe/Berlin of the run's date; monthly runs fall on the 1st, the January
    run on 1 January, and no run falls after today's Berlin date (of `now`)."""
    if kind is RunKind.MONTHLY and business_date.day != 1:
        raise RunRefused("the monthly run falls on the 1st of a month")
    if kind is RunKind.JANUARY and (business_date.month, business_date.day) != (1, 1):
        raise RunRefused("the January run falls on 1 January")
    if business_date < EARLIEST_RUN:
        raise RunRefused(f"no runs before {EARLIEST_RUN.isoformat()}")
    today = berlin_date(now)
    if business_date > today:
        raise RunRefused(
            f"business date {business_date.isoformat()} is after the service's business date"
            f" {today.isoformat()}: a run in the future would announce what later facts can"
            " still change"
        )
    return start_of_berlin_day(business_date)


async def run_ledger_job(
    transactions: Transactions[U],
    loyalty: Loyalty,
    as_of: datetime,
    progress: Callable[[int], None] = lambda _: None,
    chunk: int = 200,
) -> int:
    """Announce every customer's ledger as of `as_of`; returns how many events went out."""
    announced = 0
    after = ""
    while True:
        customers = await transactions.execute(loyalty.customers, ListCustomers(after, chunk))
        if not customers:
            return announced
        done = await transactions.execute(loyalty.announce, Announce(tuple(customers), as_of))
        count_points(done)
        announced += done.events
        progress(len(customers))
        after = customers[-1]


MOVEMENTS = ("credited", "expired", "forfeited")
for _movement in MOVEMENTS:  # every movement's series exists from the start, at 0
    LOYALTY_POINTS.labels(_movement)


def count_points(done: Announced) -> None:
    """OPS-2: the points a committed chunk announced, by movement. Called once the chunk's
    transaction committed: an attempt that conflicted and was taken again counts once."""
    for movement, points in zip(
        MOVEMENTS, (done.credited, done.expired, done.forfeited), strict=True
    ):
        if points:
            LOYALTY_POINTS.labels(movement).inc(points)
