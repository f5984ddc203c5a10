"""8. How a statement's cost grows with the customer's facts (LOY-10/LOY-13).

For customers with 100, 1,000 and 10,000 facts (registered, enrolled, a policy, then
premium payments spread over ten years up to the statement date, a redemption every
hundred facts), the latency of what `GET /loyalty/statement` does without the HTTP
layer: `Loyalty.statement` in its own transaction on PostgreSQL (read the facts, fold
them as of the service clock) and its JSON body (`views.statement_json`).

Each customer is asked once untimed (a first read builds whatever the service keeps),
then `repeats` times one after another; p50 and p99 of those are the figures, printed as
a curve. The aim: p99 under 50 ms at 10,000 facts.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

from loyalty.bootstrap import MIGRATIONS
from loyalty.bootstrap import unit_of_work as loyalty_unit_of_work
from loyalty.domain import facts as f
from loyalty.domain.config import LoyaltyConfig
from loyalty.domain.facts import CustomerFact
from loyalty.entrypoints.views import statement_json
from loyalty.handlers import GetStatement, Loyalty
from loyalty.unit_of_work import LoyaltyUnitOfWork
from servicekit.clock import FixedClock
from servicekit.db import migrations_in
from servicekit.eventstore import EventStore
from servicekit.postgres import postgres_transactions
from servicekit.testing import unique
from servicekit.unit_of_work import Transactions

from bench.common import Row, bench_schema, profiled, row, say

SECTION = "8 statement latency"
SIZES = (100, 1_000, 10_000)
AIM_P99_MS = 50.0
AS_OF = datetime(2026, 6, 15, 10, tzinfo=UTC)
FIRST = datetime(2016, 6, 1, 8, tzinfo=UTC)
POLICY = "policy-1"


def history(customer: str, count: int) -> list[CustomerFact]:
    """`count` facts of one customer: the basics, then payments (and now and then a
    redemption) evenly over the ten years before the statement date."""
    facts: list[f.Fact] = [
        f.CustomerRegistered(f"{customer}-reg", FIRST, customer, datetime(1970, 1, 1).date(),
                             "DE", natural_person=True),
        f.Enrolled(f"{customer}-enrol", FIRST + timedelta(hours=1), customer),
        f.PolicyIssued(f"{customer}-policy", FIRST + timedelta(hours=2), POLICY, "motor",
                       point_relevant=True, policyholder_ids=(customer,),
                       start_date=FIRST.date()),
    ]  # fmt: skip
    step = (AS_OF - timedelta(days=1) - FIRST) / (count - len(facts))
    for i in range(count - len(facts)):
        at = FIRST + timedelta(hours=3) + step * i
        if i % 100 == 99:
            facts.append(
                f.RewardRedeemed(f"{customer}-red-{i}", at, customer, f"r-{i}", "voucher", 50, 0)
            )
            continue
        facts.append(
            f.PremiumPaid(f"{customer}-pay-{i}", at, f"pay-{customer}-{i}", POLICY, "motor",
                          point_relevant=True, amount_cents=2_500 + i % 700,
                          policyholder_ids=(customer,))
        )  # fmt: skip
    return [(customer, fact) for fact in facts]


async def store(transactions: Transactions[LoyaltyUnitOfWork], rows: list[CustomerFact]) -> None:
    for start in range(0, len(rows), 2_000):
        chunk = rows[start : start + 2_000]

        async def add(uow: LoyaltyUnitOfWork, chunk: list[CustomerFact] = chunk) -> None:
            await uow.facts.add(chunk)

        await transactions.run(add)


async def served_ms(
    transactions: Transactions[LoyaltyUnitOfWork], loyalty: Loyalty, customer: str
) -> tuple[float, int]:
    """Milliseconds to fold and encode one statement; and its history's length."""
    started = time.perf_counter()
    ledger = await transactions.execute(loyalty.statement, GetStatement(customer))
    body = statement_json(ledger)
    elapsed = (time.perf_counter() - started) * 1000
    assert body
    return elapsed, len(ledger.history)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(dsn: str, quick: bool) -> list[Row]:
    repeats = 30 if quick else 100
    loyalty = Loyalty(LoyaltyConfig(), FixedClock(AS_OF))
    store_ = EventStore("/loyalty")
    rows: list[Row] = []
    curve: list[str] = []
    async with bench_schema(dsn, "bench_statements", migrations_in(MIGRATIONS)) as (_, pool):
        transactions = postgres_transactions(pool, lambda c: loyalty_unit_of_work(c, store_))
        for size in SIZES:
            customer = unique(f"stmt{size}")
            await store(transactions, history(customer, size))
            _, entries = await served_ms(transactions, loyalty, customer)  # untimed first read
            timings: list[float] = []
            with profiled(f"statement_{size}"):
                for _ in range(repeats):
                    timings.append((await served_ms(transactions, loyalty, customer))[0])
            p50, p99 = statistics.median(timings), percentile(timings, 0.99)
            say(f"statements: {size:,} facts: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            curve.append(f"{size:>7,} facts | p50 {p50:7.1f} ms | p99 {p99:7.1f} ms")
            rows.append(_row(size, repeats, timings, p50, p99, entries))
    print("statement latency by facts per customer:\n  " + "\n  ".join(curve), flush=True)
    return rows


def _row(
    size: int, repeats: int, timings: list[float], p50: float, p99: float, entries: int
) -> Row:
    aimed = size == SIZES[-1]
    result = row(
        SECTION,
        f"statement of a customer with {size:,} facts",
        events=repeats,
        seconds=sum(timings) / 1000,
        aim=f"p99 < {AIM_P99_MS:.0f} ms" if aimed else None,
        met=p99 < AIM_P99_MS if aimed else None,
        note=f"p50 {p50:.1f} ms, p99 {p99:.1f} ms over {repeats} requests one at a time;"
        f" {entries:,} history entries; handler in its transaction + JSON body, no HTTP",
    )
    result |= {"facts": size, "p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}
    return result
