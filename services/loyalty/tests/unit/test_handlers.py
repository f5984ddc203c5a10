"""Every loyalty handler on the in-memory unit of work (no database, no broker)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

import pytest
from contracts_schemas import loyalty as events
from loyalty.adapters.memory import InMemoryLoyaltyUnitOfWork, transactions
from loyalty.domain.config import LoyaltyConfig, Reward
from loyalty.domain.decisions import (
    EnrolmentRefusalCode,
    EnrolmentRefused,
    RedemptionRefusalCode,
    RedemptionRefused,
)
from loyalty.domain.facts import (
    AccountCancelled,
    CustomerRegistered,
    EmailInsteadOfLetterActivated,
    PremiumPaid,
    RewardRedeemed,
)
from loyalty.domain.ledger import Ledger, MembershipStatus, build_ledger
from loyalty.handlers import (
    SNAPSHOT_MIN_FACTS,
    Announce,
    Announced,
    ClearProjections,
    Enrol,
    GetHistory,
    GetStatement,
    ListCustomers,
    Loyalty,
    Redeem,
    UnknownReward,
    event_uuid,
)
from loyalty.jobs import MOVEMENTS, RunKind, RunRefused, run_ledger_job, run_moment
from loyalty.unit_of_work import LoyaltyUnitOfWork, account_stream
from prometheus_client import REGISTRY
from servicekit.clock import BERLIN, FixedClock
from servicekit.unit_of_work import ConcurrencyConflict, Conflict

CONFIG = LoyaltyConfig(
    rewards={
        "tickets": Reward("tickets", "Tickets", 250, False, 0),
        "cinema": Reward("cinema", "Kinogutschein", 1500, True, 1),
    }
)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(at(2026, 1, 3, 9))


@pytest.fixture
def loyalty(clock: FixedClock) -> Loyalty:
    return Loyalty(CONFIG, clock)


@pytest.fixture
def uow() -> InMemoryLoyaltyUnitOfWork:
    return InMemoryLoyaltyUnitOfWork()


def registration(customer: str, born: date = date(1980, 1, 1)) -> CustomerRegistered:
    return CustomerRegistered(f"reg-{customer}", at(2026, 1, 2), customer, born, "DE", True)


async def enrolled_with_300_points(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock, customer: str = "c1"
) -> None:
    """Registered, enrolled 3 January, 300 EUR paid 15 January; clock: 2 February."""
    clock.set(at(2026, 1, 3, 9))
    await uow.facts.add([(customer, registration(customer))])
    assert isinstance(await loyalty.enrol(Enrol(customer), uow), Ledger)
    payment = PremiumPaid(
        f"pay-{customer}", at(2026, 1, 15), "p1", "KFZ-1", "motor", True, 30_000, (customer,)
    )
    await uow.facts.add([(customer, payment)])
    clock.set(at(2026, 2, 2, 12))


# --- LOY-12: facts in ---------------------------------------------------------------------


async def test_loy12_record_facts_stores_each_fact_once_per_customer_it_concerns(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork
) -> None:
    from loyalty_harness import premium_paid

    paid = premium_paid("KFZ-1", ("anna", "ben"), 9_999, at(2026, 1, 15), 2)

    await loyalty.record_facts([paid, paid], uow)

    assert sorted(uow.facts.rows) == [("anna", str(paid.event_id)), ("ben", str(paid.event_id))]


async def test_loy12_clear_projections_forgets_facts_and_statements(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork
) -> None:
    await uow.facts.add([("c1", registration("c1"))])
    await uow.statements.save("c1", at(2026, 1, 1), 0, "not_enrolled")

    await loyalty.clear_projections(ClearProjections(), uow)

    assert uow.facts.rows == {}
    assert uow.statements.rows == {}


# --- LOY-1 -------------------------------------------------------------------------------


async def test_loy1_enrolment_is_recorded_on_the_account_stream_and_as_a_fact(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork
) -> None:
    await uow.facts.add([("c1", registration("c1"))])

    ledger = await loyalty.enrol(Enrol("c1"), uow)

    assert isinstance(ledger, Ledger)
    assert ledger.membership.status is MembershipStatus.ENROLLED
    (enrolled,) = uow.events.streams[account_stream("c1")]
    assert isinstance(enrolled, events.CustomerEnrolled)
    assert enrolled.event_id == event_uuid("c1", "enrolled:c1")
    assert enrolled.aggregate_version == 1
    assert (await loyalty.statement(GetStatement("c1"), uow)).membership.is_active


async def test_loy1_a_second_enrolment_is_refused_as_already_enrolled(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork
) -> None:
    await uow.facts.add([("c1", registration("c1"))])
    await loyalty.enrol(Enrol("c1"), uow)

    again = await loyalty.enrol(Enrol("c1"), uow)

    assert isinstance(again, EnrolmentRefused)
    assert again.reason_code is EnrolmentRefusalCode.ALREADY_ENROLLED
    assert len(uow.events.streams[account_stream("c1")]) == 1


async def test_loy1_enrolment_without_registration_or_after_cancellation_is_refused(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork
) -> None:
    unknown = await loyalty.enrol(Enrol("nobody"), uow)
    await uow.facts.add([("c2", registration("c2"))])
    await uow.facts.add([("c2", AccountCancelled("acc-c2", at(2026, 1, 2, 13), "c2"))])
    cancelled = await loyalty.enrol(Enrol("c2"), uow)

    assert isinstance(unknown, EnrolmentRefused)
    assert unknown.reason_code is EnrolmentRefusalCode.NOT_REGISTERED
    assert isinstance(cancelled, EnrolmentRefused)
    assert cancelled.reason_code is EnrolmentRefusalCode.ACCOUNT_CANCELLED
    assert uow.events.published == []


async def test_loy1_simultaneous_enrolments_conflict_and_the_retry_sees_the_first(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork
) -> None:
    """Issue 7 item 7: the same decision recorded meanwhile (DuplicateEvent) is a
    Conflict; taken again on fresh state it is 'already enrolled'."""
    await uow.facts.add([("c1", registration("c1"))])
    first = InMemoryLoyaltyUnitOfWork()
    first.facts.rows = dict(uow.facts.rows)
    await loyalty.enrol(Enrol("c1"), first)
    # The other request's event is in the log under another stream position.
    await uow.events.append("elsewhere", 0, first.events.streams[account_stream("c1")])

    with pytest.raises(Conflict):
        await loyalty.enrol(Enrol("c1"), uow)


# --- LOY-6 -------------------------------------------------------------------------------


async def test_loy6_a_redemption_is_appended_at_the_version_read_with_the_facts(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    await enrolled_with_300_points(loyalty, uow, clock)

    redeemed = await loyalty.redeem(Redeem("c1", "tickets", "r-00000001"), uow)

    assert isinstance(redeemed, RewardRedeemed)
    assert (redeemed.points, redeemed.co_payment_cents) == (250, 0)
    _, recorded = uow.events.streams[account_stream("c1")]
    assert isinstance(recorded, events.RewardRedeemed)
    assert recorded.aggregate_version == 2
    assert (await loyalty.statement(GetStatement("c1"), uow)).balance == 50


async def test_loy6_a_decision_taken_on_facts_older_than_the_stream_conflicts(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    """Issue 7 item 6: another redemption appended after this one read the account (its
    fact not yet visible here) makes this append conflict instead of spending twice."""
    await enrolled_with_300_points(loyalty, uow, clock)
    other = events.RewardRedeemed(
        event_id=uuid.uuid4(), aggregate_id=account_stream("c1"), aggregate_version=2,
        occurred_at=clock.now(), customer_ids=("c1",), customer_id="c1",
        redemption_id="r-other", reward_id="tickets", points=250, co_payment_cents=0,
    )  # fmt: skip
    await uow.events.append(account_stream("c1"), 1, [other])  # its fact is not stored

    stale = uow.facts.account

    async def read_before_the_other(customer_id: str, **read: Any):  # type: ignore[no-untyped-def]
        account = await stale(customer_id, **read)
        return dataclasses.replace(account, version=1)

    uow.facts.account = read_before_the_other  # type: ignore[method-assign]
    with pytest.raises(ConcurrencyConflict):
        await loyalty.redeem(Redeem("c1", "tickets", "r-00000002"), uow)


async def test_loy6_refusals_unknown_reward_insufficient_points_and_repeated_id(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    await enrolled_with_300_points(loyalty, uow, clock)
    with pytest.raises(UnknownReward):
        await loyalty.redeem(Redeem("c1", "yacht", "r-00000001"), uow)
    await loyalty.redeem(Redeem("c1", "tickets", "r-00000001"), uow)

    again = await loyalty.redeem(Redeem("c1", "tickets", "r-00000001"), uow)
    short = await loyalty.redeem(Redeem("c1", "tickets", "r-00000002"), uow)

    assert isinstance(again, RedemptionRefused)
    assert again.reason_code is RedemptionRefusalCode.ALREADY_REDEEMED
    assert isinstance(short, RedemptionRefused)
    assert short.reason_code is RedemptionRefusalCode.INSUFFICIENT_POINTS


async def test_loy6_a_shortfall_is_co_paid_where_the_reward_allows_it(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    await enrolled_with_300_points(loyalty, uow, clock)

    redeemed = await loyalty.redeem(Redeem("c1", "cinema", "r-00000001"), uow)

    assert isinstance(redeemed, RewardRedeemed)
    assert (redeemed.points, redeemed.co_payment_cents) == (300, 1200)


# --- runs: LOY-2/LOY-4/LOY-5, OPS-3 ------------------------------------------------------


async def test_loy2_a_run_announces_each_credit_once_and_keeps_the_statement_row(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    await enrolled_with_300_points(loyalty, uow, clock)
    await uow.facts.add([("c1", EmailInsteadOfLetterActivated("eil", at(2026, 1, 4), "c1"))])
    uow.events.published.clear()

    first = await loyalty.announce(Announce(("c1",), at(2026, 2, 1)), uow)
    second = await loyalty.announce(Announce(("c1",), at(2026, 2, 1)), uow)

    assert (first.events, second.events) == (2, 0)
    assert (first.credited, first.expired, first.forfeited) == (1300, 0, 0)
    credited = [m for m in uow.events.published if isinstance(m, events.PointsCredited)]
    assert sorted((m.rule, m.points) for m in credited) == [("LOY-2", 300), ("LOY-4", 1000)]
    assert uow.statements.rows["c1"] == (at(2026, 2, 1), 1300, "enrolled")
    assert uow.announcements.locked == 2, "one run at a time"


async def test_ops3_a_run_goes_through_every_customer_in_chunks(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    for customer in ("a", "b", "c"):
        await enrolled_with_300_points(loyalty, uow, clock, customer)
    seen: list[int] = []

    sent = await run_ledger_job(
        transactions(uow), loyalty, at(2026, 2, 1), progress=seen.append, chunk=2
    )

    assert sent == 3
    assert seen == [2, 1]
    assert await loyalty.customers(ListCustomers("a", 10), uow) == ["b", "c"]


def points_counted() -> dict[str, float]:
    return {
        movement: REGISTRY.get_sample_value("portal_loyalty_points_total", {"movement": movement})
        or 0.0
        for movement in MOVEMENTS
    }


class ConflictingOnce(Loyalty):
    """The first chunk's transaction loses a race (a Conflict) and is taken again."""

    conflicts: ClassVar[list[int]] = []

    async def announce(self, command: Announce, uow: LoyaltyUnitOfWork) -> Announced:
        done = await super().announce(command, uow)
        if not self.conflicts:
            self.conflicts.append(1)
            raise Conflict("another run announced meanwhile")
        return done


async def test_ops2_points_are_counted_by_movement_once_the_chunk_committed(
    uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    """OPS-2: portal_loyalty_points_total{movement} grows by the points the run announced
    (credited, then forfeited with the account), a conflicting attempt not counted."""
    loyalty = ConflictingOnce(CONFIG, clock)
    await enrolled_with_300_points(loyalty, uow, clock)
    await uow.facts.add([("c1", AccountCancelled("acc-c1", at(2026, 3, 10), "c1"))])
    uow.events.published.clear()
    ConflictingOnce.conflicts.clear()
    before = points_counted()

    sent = await run_ledger_job(transactions(uow), loyalty, at(2026, 4, 1))

    assert ConflictingOnce.conflicts == [1], "the chunk was taken twice"
    published = [m for m in uow.events.published if hasattr(m, "points")]
    assert sent == len(uow.events.published)
    by_type = {
        "credited": sum(m.points for m in published if isinstance(m, events.PointsCredited)),
        "expired": sum(m.points for m in published if isinstance(m, events.PointsExpired)),
        "forfeited": sum(m.points for m in published if isinstance(m, events.PointsForfeited)),
    }
    assert by_type["credited"] == 300
    assert by_type["forfeited"] > 0
    after = points_counted()
    assert {m: after[m] - before[m] for m in MOVEMENTS} == by_type


async def test_ops3_history_lists_the_facts_in_business_order(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    await enrolled_with_300_points(loyalty, uow, clock)

    history = await loyalty.history(GetHistory("c1"), uow)

    assert [type(f).__name__ for f in history] == ["CustomerRegistered", "Enrolled", "PremiumPaid"]


@pytest.mark.parametrize(
    ("kind", "day", "reason"),
    [
        (RunKind.MONTHLY, date(2026, 4, 2), "the monthly run falls on the 1st"),
        (RunKind.JANUARY, date(2026, 2, 1), "the January run falls on 1 January"),
        (RunKind.EXPIRY, date(2030, 1, 1), "after the service's business date 2026-04-15"),
        (RunKind.MONTHLY, date(2026, 5, 1), "after the service's business date 2026-04-15"),
        (RunKind.EXPIRY, date(1, 1, 1), "no runs before 1970-01-01"),
    ],
)
def test_ops3_runs_are_refused_for_wrong_or_future_business_dates(
    kind: RunKind, day: date, reason: str
) -> None:
    """Issue 7 item 11: a run never announces what later facts could still change."""
    with pytest.raises(RunRefused, match=reason):
        run_moment(kind, day, at(2026, 4, 15, 23, 30))


def test_ops3_a_run_for_today_falls_at_midnight_berlin() -> None:
    assert run_moment(RunKind.EXPIRY, date(2026, 4, 15), at(2026, 4, 15, 0, 1)) == at(2026, 4, 15)


# --- LOY-13: long histories fold on from a snapshot ----------------------------------------


async def long_history(loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock) -> None:
    """c1 enrolled in January 2020 and paid weekly since: more facts than a snapshot needs."""
    clock.set(at(2020, 1, 3, 9))
    await uow.facts.add([("c1", registration("c1"))])
    assert isinstance(await loyalty.enrol(Enrol("c1"), uow), Ledger)
    payments = [
        PremiumPaid(f"pay-{n}", at(2020, 1, 6, 10) + timedelta(weeks=n), f"p{n}", "KFZ-1",
                    "motor", True, 2_000 + n, ("c1",))
        for n in range(SNAPSHOT_MIN_FACTS + 50)
    ]  # fmt: skip
    await uow.facts.add([("c1", p) for p in payments])
    clock.set(at(2026, 1, 3, 9))


async def full_fold(uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock) -> Ledger:
    return build_ledger("c1", (await uow.facts.account("c1")).facts, clock.now(), CONFIG)


async def test_loy13_a_long_statement_is_folded_on_from_a_snapshot_and_equals_the_full_fold(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    await long_history(loyalty, uow, clock)

    first = await loyalty.statement(GetStatement("c1"), uow)
    kept = loyalty.snapshots.get("c1")
    assert kept is not None
    assert kept.snapshot.facts >= SNAPSHOT_MIN_FACTS
    clock.set(at(2026, 2, 2, 12))  # a monthly run later
    second = await loyalty.statement(GetStatement("c1"), uow)

    assert loyalty.snapshots.get("c1") is kept, "served from the snapshot"
    assert first != second
    assert second == await full_fold(uow, clock)


async def test_loy13_a_late_fact_before_the_snapshot_is_in_the_next_statement(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    await long_history(loyalty, uow, clock)
    await loyalty.statement(GetStatement("c1"), uow)
    kept = loyalty.snapshots.get("c1")
    assert kept is not None

    late = PremiumPaid("pay-late", at(2021, 3, 3), "p-late", "KFZ-1", "motor", True, 77_700,
                       ("c1",))  # fmt: skip
    await uow.facts.add([("c1", late)])
    statement = await loyalty.statement(GetStatement("c1"), uow)

    assert any(e.entry_id == "premium:p-late" for e in statement.history)
    assert statement == await full_fold(uow, clock)
    assert loyalty.snapshots.get("c1") is not kept, "the snapshot was made again"


async def test_loy6_a_redemption_decided_from_a_snapshot_spends_what_the_full_fold_holds(
    loyalty: Loyalty, uow: InMemoryLoyaltyUnitOfWork, clock: FixedClock
) -> None:
    await long_history(loyalty, uow, clock)
    await loyalty.statement(GetStatement("c1"), uow)  # the snapshot is made
    balance = (await full_fold(uow, clock)).balance

    redeemed = await loyalty.redeem(Redeem("c1", "cinema", "red-long-1"), uow)

    assert isinstance(redeemed, RewardRedeemed)
    assert redeemed.points == min(1500, balance)
    after = await loyalty.statement(GetStatement("c1"), uow)
    assert after == await full_fold(uow, clock)
    assert after.balance == balance - redeemed.points
