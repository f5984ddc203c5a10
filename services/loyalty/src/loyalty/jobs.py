"""The loyalty runs for a business date (LOY-2 monthly, LOY-3 January, LOY-5 expiry).

Balances follow from facts and the calendar alone, so a run does not compute points: it
announces, for every customer, what the calendar up to that date has credited, expired
or forfeited, and the expiry warnings due, each once. Two schedulers firing together are
harmless: an advisory lock lets one run at a time and every announcement is recorded
once per customer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum

import asyncpg
from servicekit.clock import start_of_berlin_day

from loyalty.adapters.fact_store import customers_with_facts
from loyalty.handlers import Loyalty

_JOB_LOCK = 0x10_7A17


class RunKind(StrEnum):
    MONTHLY = "monthly"
    JANUARY = "january"
    EXPIRY = "expiry"


class WrongRunDate(ValueError):
    pass


def run_moment(kind: RunKind, business_date: date) -> datetime:
    """00:00 Europe/Berlin of the run's date; monthly runs fall on the 1st, the January
    run on 1 January."""
    if kind is RunKind.MONTHLY and business_date.day != 1:
        raise WrongRunDate("the monthly run falls on the 1st of a month")
    if kind is RunKind.JANUARY and (business_date.month, business_date.day) != (1, 1):
        raise WrongRunDate("the January run falls on 1 January")
    return start_of_berlin_day(business_date)


async def run_ledger_job(
    pool: asyncpg.Pool,
    loyalty: Loyalty,
    as_of: datetime,
    progress: Callable[[int], None] = lambda _: None,
    chunk: int = 200,
) -> int:
    """Announce every customer's ledger as of `as_of`; returns how many events went out."""
    announced = 0
    async with pool.acquire() as lock:
        await lock.execute("SELECT pg_advisory_lock($1)", _JOB_LOCK)
        try:
            after = ""
            while True:
                async with pool.acquire() as conn:
                    customers = await customers_with_facts(conn, after, chunk)
                if not customers:
                    return announced
                async with pool.acquire() as conn, conn.transaction():
                    for customer_id in customers:
                        announced += await loyalty.announce(conn, customer_id, as_of)
                progress(len(customers))
                after = customers[-1]
        finally:
            await lock.execute("SELECT pg_advisory_unlock($1)", _JOB_LOCK)
