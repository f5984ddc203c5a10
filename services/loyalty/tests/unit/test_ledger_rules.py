"""The points ledger, rule by rule (LOY-2 .. LOY-11), with the calendar edge cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from fractions import Fraction

from loyalty.domain.config import Campaign, LoyaltyConfig
from loyalty.domain.decisions import decide_redemption
from loyalty.domain.facts import RewardRedeemed
from loyalty.domain.ledger import (
    CampaignReason,
    EilBonusReason,
    EntryKind,
    ExpiryReason,
    ForfeitReason,
    Ledger,
    LotDraw,
    LoyaltyReason,
    MembershipStatus,
    NextExpiry,
    PremiumReason,
    RedemptionReason,
    build_ledger,
    expiry_warnings,
)


def lot_ids(ledger: Ledger) -> list[str]:
    return [lot.lot_id for lot in ledger.lots]


def points_of(ledger: Ledger, lot_id: str) -> int:
    return next(lot.points for lot in ledger.lots if lot.lot_id == lot_id)


def assert_consistent(ledger: Ledger) -> None:
    assert ledger.balance == sum(lot.remaining for lot in ledger.lots) >= 0
    if ledger.history:
        assert ledger.history[-1].balance_after == ledger.balance


# --- LOY-2 premium points -----------------------------------------------------------------


def test_loy2_payment_on_last_day_of_month_is_credited_in_next_months_run(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 10))
    s.pay("P1", 12_345, s.at(2026, 3, 31, 23, 59), ("c1",), payment_id="march")

    before_run = s.ledger("c1", s.at(2026, 3, 31, 23, 59, 59))
    assert before_run.balance == 0
    assert [(p.lot_id, p.run_on, p.points) for p in before_run.pending] == [
        ("premium:march", date(2026, 4, 1), 123)
    ]

    at_run = s.ledger("c1", s.at(2026, 4, 1, 0, 0))
    (lot,) = at_run.lots
    assert (lot.lot_id, lot.credited_on, lot.points) == ("premium:march", date(2026, 4, 1), 123)
    assert at_run.history[-1].at == s.at(2026, 4, 1, 0, 0)
    assert at_run.pending == ()


def test_loy2_payment_half_an_hour_after_berlin_midnight_belongs_to_the_new_month(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 10))
    paid = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)  # 1 April 00:30 in Berlin (CEST)
    s.pay("P1", 10_000, paid, ("c1",), payment_id="april")

    assert s.ledger("c1", s.at(2026, 4, 1, 0, 0)).lots == ()
    waiting = s.ledger("c1", s.at(2026, 4, 30, 23, 59))
    assert [p.run_on for p in waiting.pending] == [date(2026, 5, 1)]
    credited = s.ledger("c1", s.at(2026, 5, 1, 0, 0))
    assert [(lot.credited_on, lot.points) for lot in credited.lots] == [(date(2026, 5, 1), 100)]


def test_loy2_points_per_full_euro_at_the_product_line_rate(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 10))
    s.pay("H", 12_399, s.at(2026, 2, 3), ("c1",), line="household", payment_id="h")
    s.pay("M", 9_999, s.at(2026, 2, 4), ("c1",), line="motor", payment_id="m")  # rate 1/2
    s.pay("L", 5_050, s.at(2026, 2, 5), ("c1",), line="life", payment_id="l")  # rate 2
    s.pay("H", 99, s.at(2026, 2, 6), ("c1",), line="household", payment_id="cents")

    ledger = s.ledger("c1", s.at(2026, 3, 1, 0, 0))

    assert {lot.lot_id: lot.points for lot in ledger.lots} == {
        "premium:h": 123,
        "premium:m": 49,
        "premium:l": 100,
    }
    assert ledger.balance == 272
    motor = next(e for e in ledger.history if e.entry_id == "premium:m")
    assert motor.rule == "LOY-2"
    reason = motor.reason
    assert isinstance(reason, PremiumReason)
    assert (reason.payment_id, reason.policy_id, reason.product_line, reason.paid_at) == (
        "m",
        "M",
        "motor",
        s.at(2026, 2, 4),
    )
    assert (reason.amount_cents, reason.full_euros, reason.rate) == (9_999, 99, Fraction(1, 2))


def test_loy2_no_points_before_enrolment_or_for_non_relevant_contracts(scenario):
    s = scenario
    s.register("c1", s.at(2026, 1, 1))
    s.pay("P1", 50_000, s.at(2026, 2, 10, 9, 59, 59), ("c1",), payment_id="before")
    s.enrol("c1", s.at(2026, 2, 10, 10, 0))
    s.pay("P1", 20_000, s.at(2026, 2, 10, 10, 0), ("c1",), payment_id="same-instant")
    s.pay("P2", 30_000, s.at(2026, 2, 11), ("c1",), relevant=False, payment_id="irrelevant")

    ledger = s.ledger("c1", s.at(2026, 4, 1))

    assert lot_ids(ledger) == ["premium:same-instant"]
    assert ledger.balance == 200


def test_loy2_a_payment_counts_once_per_payment_id(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 10))
    s.pay("P1", 10_000, s.at(2026, 2, 3), ("c1",), payment_id="x")
    s.pay("P1", 10_000, s.at(2026, 2, 3), ("c1",), payment_id="x")  # new event id

    assert s.ledger("c1", s.at(2026, 3, 2)).balance == 100


# --- LOY-3 loyalty points -----------------------------------------------------------------


def test_loy3_january_run_credits_100_per_year_held_plus_one(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2023, 3, 1))
    s.enrol("c1", s.at(2024, 6, 1))

    ledger = s.ledger("c1", s.at(2026, 1, 1, 0, 0))

    assert {lot.lot_id: lot.points for lot in ledger.lots} == {
        "loyalty:2025": 200,
        "loyalty:2026": 300,
    }
    last = ledger.history[-1]
    assert (last.at, last.rule) == (s.at(2026, 1, 1, 0, 0), "LOY-3")
    assert last.reason == LoyaltyReason(2026, "P1", date(2023, 3, 1), full_years=2, k=3)
    assert ledger.lots[-1].credited_on == date(2026, 1, 1)


def test_loy3_tenth_year_earns_1000_and_the_eleventh_year_stays_at_1000(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2016, 1, 1))
    s.enrol("c1", s.at(2023, 1, 1))

    ledger = s.ledger("c1", s.at(2026, 6, 1))

    assert points_of(ledger, "loyalty:2024") == 900  # 8 full years: 9th year
    assert points_of(ledger, "loyalty:2025") == 1000  # 9 full years: 10th year
    assert points_of(ledger, "loyalty:2026") == 1000  # 10 full years: 11th year
    assert ledger.lots[-1].reason == LoyaltyReason(2026, "P1", date(2016, 1, 1), 10, 11)


def test_loy3_counts_the_relevant_contract_held_longest(scenario):
    s = scenario
    s.issue("young", ("c1",), date(2020, 5, 1))
    s.issue("not-relevant", ("c1",), date(2012, 2, 1), relevant=False)
    s.issue("oldest", ("c1",), date(2018, 1, 2))
    s.enrol("c1", s.at(2025, 3, 1))

    ledger = s.ledger("c1", s.at(2026, 1, 1, 0, 0))

    assert ledger.lots[-1].reason == LoyaltyReason(2026, "oldest", date(2018, 1, 2), 7, 8)
    assert ledger.balance == 800


def test_loy3_contract_cancelled_in_a_year_counts_in_that_years_run_never_later(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2018, 1, 1))
    s.enrol("c1", s.at(2020, 3, 1))
    s.cancel_policy("P1", effective=date(2026, 3, 31), at=s.at(2025, 12, 1))

    ledger = s.ledger("c1", s.at(2027, 6, 1))

    assert "loyalty:2026" in lot_ids(ledger)
    assert "loyalty:2027" not in lot_ids(ledger)


def test_loy3_contract_ended_on_31_december_does_not_count_in_the_next_run(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2018, 1, 1))
    s.enrol("c1", s.at(2020, 3, 1))
    s.cancel_policy("P1", effective=date(2025, 12, 31), at=s.at(2025, 11, 10))

    assert lot_ids(s.ledger("c1", s.at(2026, 2, 1)))[-1] == "loyalty:2025"


def test_loy3_loy8_contract_cancelled_and_retaken_restarts_the_holding(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2015, 1, 1))
    s.enrol("c1", s.at(2020, 3, 1))
    s.cancel_policy("P1", effective=date(2024, 6, 30), at=s.at(2024, 6, 1))
    s.pay("P1", 10_000, s.at(2024, 6, 30, 18), ("c1",), payment_id="last-day")
    s.pay("P1", 10_000, s.at(2024, 7, 15), ("c1",), payment_id="after-cancellation")
    s.issue("P1", ("c1",), date(2024, 9, 1), at=s.at(2024, 8, 20))
    s.pay("P1", 10_000, s.at(2024, 9, 15), ("c1",), payment_id="retaken")

    ledger = s.ledger("c1", s.at(2026, 1, 1, 0, 0))

    assert points_of(ledger, "loyalty:2024") == 1000  # held since 2015
    assert points_of(ledger, "loyalty:2025") == 100  # restarted 2024-09-01
    assert points_of(ledger, "loyalty:2026") == 200
    assert "premium:last-day" in lot_ids(ledger)
    assert "premium:after-cancellation" not in lot_ids(ledger)
    assert "premium:retaken" in lot_ids(ledger)


def test_loy3_needs_enrolment_at_the_run(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2018, 1, 1))
    s.enrol("c1", s.at(2026, 1, 1, 0, 0, 1))

    ledger = s.ledger("c1", s.at(2027, 1, 1, 0, 0))

    assert lot_ids(ledger) == ["loyalty:2027"]


def test_loy3_holder_added_later_holds_from_the_effective_date_removed_one_stops(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2019, 1, 1))
    s.enrol("c1", s.at(2020, 1, 5))
    s.enrol("c2", s.at(2020, 1, 5))
    s.change_holders("P1", ("c1", "c2"), date(2024, 4, 1), s.at(2024, 3, 20))
    s.change_holders("P1", ("c2",), date(2025, 6, 30), s.at(2025, 6, 1))

    c1 = s.ledger("c1", s.at(2026, 2, 1))
    c2 = s.ledger("c2", s.at(2026, 2, 1))

    assert points_of(c1, "loyalty:2025") == 700
    assert "loyalty:2026" not in lot_ids(c1)
    assert points_of(c2, "loyalty:2025") == 100
    assert points_of(c2, "loyalty:2026") == 200


# --- LOY-4 e-mail-instead-of-letter bonus ------------------------------------------------


def test_loy4_activation_one_second_after_enrolment_earns_1000(scenario):
    s = scenario
    s.activate_eil("c1", s.at(2026, 2, 1, 10, 0, 1))  # arrives first, happened later
    s.enrol("c1", s.at(2026, 2, 1, 10, 0, 0))

    ledger = s.ledger("c1", s.at(2026, 2, 2))

    (lot,) = ledger.lots
    assert (lot.lot_id, lot.points, lot.credited_on) == ("eil-bonus", 1000, date(2026, 2, 1))
    assert ledger.history[0].rule == "LOY-4"
    assert isinstance(ledger.history[0].reason, EilBonusReason)


def test_loy4_activation_one_second_before_enrolment_earns_nothing(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 2, 1, 10, 0, 0))
    s.activate_eil("c1", s.at(2026, 2, 1, 9, 59, 59))  # arrives later, happened earlier

    assert s.ledger("c1", s.at(2026, 2, 2)).balance == 0


def test_loy4_activation_at_the_same_instant_as_enrolment_earns_nothing(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 2, 1, 10))
    s.activate_eil("c1", s.at(2026, 2, 1, 10))

    assert s.ledger("c1", s.at(2026, 2, 2)).balance == 0


def test_loy4_first_activation_before_enrolment_means_no_bonus_even_after_toggling(scenario):
    s = scenario
    s.register("c1", s.at(2025, 1, 1))
    s.activate_eil("c1", s.at(2025, 1, 2))
    s.enrol("c1", s.at(2025, 2, 1))
    s.deactivate_eil("c1", s.at(2025, 3, 1))
    s.activate_eil("c1", s.at(2025, 3, 2))

    assert s.ledger("c1", s.at(2025, 4, 1)).balance == 0


def test_loy4_deactivating_and_reactivating_earns_nothing_more(scenario):
    s = scenario
    s.enrol("c1", s.at(2025, 2, 1))
    s.activate_eil("c1", s.at(2025, 2, 2))
    s.deactivate_eil("c1", s.at(2025, 3, 1))
    s.activate_eil("c1", s.at(2025, 3, 2))

    ledger = s.ledger("c1", s.at(2025, 4, 1))

    assert ledger.balance == 1000
    assert lot_ids(ledger) == ["eil-bonus"]


# --- LOY-5 lots and expiry ----------------------------------------------------------------


def test_loy5_lot_credited_2026_03_15_expires_at_the_end_of_2029(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 3, 1))
    s.activate_eil("c1", s.at(2026, 3, 15))

    assert s.ledger("c1", s.at(2029, 12, 31, 23, 59, 59)).balance == 1000
    expired = s.ledger("c1", s.at(2030, 1, 1, 0, 0))
    assert expired.lots[0].expires_on == date(2029, 12, 31)
    assert expired.balance == 0
    assert expired.history[-1].kind is EntryKind.EXPIRY


def test_loy5_lot_credited_on_1_january_and_31_december_expire_together(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2024, 1, 1))
    s.enrol("c1", s.at(2024, 6, 1))
    s.use_service("c1", "app_login", s.at(2025, 12, 31, 23, 30))  # campaign app-2025

    still = s.ledger("c1", s.at(2028, 12, 31, 23, 59, 59))
    january = next(lot for lot in still.lots if lot.lot_id == "loyalty:2025")
    december = next(lot for lot in still.lots if lot.lot_id == "campaign:app-2025")
    assert (january.credited_on, december.credited_on) == (date(2025, 1, 1), date(2025, 12, 31))
    assert january.expires_on == december.expires_on == date(2028, 12, 31)
    assert still.next_expiry == NextExpiry(date(2028, 12, 31), 200 + 250)

    after = s.ledger("c1", s.at(2029, 1, 1, 0, 0))
    expiry = next(e for e in after.history if e.kind is EntryKind.EXPIRY)
    assert expiry.at == s.at(2029, 1, 1, 0, 0)
    assert expiry.points == -450
    assert expiry.reason == ExpiryReason(
        date(2028, 12, 31), (LotDraw("loyalty:2025", 200), LotDraw("campaign:app-2025", 250))
    )
    assert after.balance == 300 + 400 + 500 + 600  # loyalty 2026 .. 2029 (run at as_of)
    assert_consistent(after)


def test_loy5_expiry_happens_before_that_days_january_run(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2020, 1, 1))
    s.enrol("c1", s.at(2020, 2, 1))

    ledger = s.ledger("c1", s.at(2025, 1, 1, 0, 0))

    last_two = ledger.history[-2:]
    assert [(e.kind, e.entry_id) for e in last_two] == [
        (EntryKind.EXPIRY, "expiry:2024-12-31"),
        (EntryKind.CREDIT, "loyalty:2025"),
    ]
    assert last_two[0].points == -200  # loyalty:2021
    assert_consistent(ledger)


def test_loy5_loy6_redemption_spanning_several_lots_takes_those_expiring_first(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2023, 1, 1))
    s.enrol("c1", s.at(2024, 6, 1))
    s.use_service("c1", "app_login", s.at(2025, 12, 31, 23, 30))  # 250, expires 2028
    s.activate_eil("c1", s.at(2026, 2, 10))  # 1000, expires 2029
    # loyalty:2025 = 300 (expires 2028), loyalty:2026 = 400 (expires 2029)

    decision = s.redeem("c1", "cinema", s.at(2026, 3, 1))

    assert isinstance(decision, RewardRedeemed)
    assert (decision.points, decision.co_payment_cents) == (1500, 0)
    ledger = s.ledger("c1", s.at(2026, 3, 2))
    entry = ledger.history[-1]
    assert entry.kind is EntryKind.REDEMPTION
    assert entry.points == -1500
    assert isinstance(entry.reason, RedemptionReason)
    assert entry.reason.lots == (
        LotDraw("loyalty:2025", 300),
        LotDraw("campaign:app-2025", 250),
        LotDraw("loyalty:2026", 400),
        LotDraw("eil-bonus", 550),
    )
    assert entry.reason.unbacked_points == 0
    assert ledger.balance == 450
    assert {lot.lot_id: lot.remaining for lot in ledger.lots}["eil-bonus"] == 450
    assert_consistent(ledger)


def test_loy5_expiry_warning_within_the_lead_days_identified_by_customer_and_date(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 3, 1))
    s.activate_eil("c1", s.at(2026, 3, 15))

    early = s.at(2029, 10, 1)  # 91 days before 31 December
    assert expiry_warnings(s.ledger("c1", early), early, s.config) == ()
    due = s.at(2029, 10, 2)  # 90 days before
    (warning,) = expiry_warnings(s.ledger("c1", due), due, s.config)
    assert (warning.warning_id, warning.expires_on, warning.points) == (
        "expiry-warning:c1:2029-12-31",
        date(2029, 12, 31),
        1000,
    )
    later = s.at(2029, 12, 1)
    assert expiry_warnings(s.ledger("c1", later), later, s.config)[0].warning_id == (
        warning.warning_id
    )


def test_loy5_no_expiry_warning_when_nothing_expires_this_year(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 3, 1))
    s.activate_eil("c1", s.at(2026, 3, 15))

    as_of = s.at(2028, 12, 1)
    assert expiry_warnings(s.ledger("c1", as_of), as_of, s.config) == ()


# --- LOY-7 joint policyholders ------------------------------------------------------------


def test_loy7_joint_policyholders_both_earn_the_full_points(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.enrol("c2", s.at(2026, 1, 6))
    s.issue("P1", ("c1", "c2", "c3"), date(2026, 1, 1), at=s.at(2026, 1, 7))
    s.pay("P1", 20_000, s.at(2026, 2, 1), ("c1", "c2", "c3"), payment_id="joint")

    as_of = s.at(2026, 3, 1, 0, 0)
    assert s.ledger("c1", as_of).balance == 200
    assert s.ledger("c2", as_of).balance == 200
    assert s.ledger("c3", as_of).balance == 0  # not enrolled


# --- LOY-8 cancelled contracts ------------------------------------------------------------


def test_loy8_points_stay_after_cancellation_and_later_payments_earn_nothing(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.issue("P1", ("c1",), date(2026, 1, 1), at=s.at(2026, 1, 7))
    s.pay("P1", 20_000, s.at(2026, 2, 1), ("c1",), payment_id="feb")
    s.cancel_policy("P1", effective=date(2026, 3, 31), at=s.at(2026, 3, 10))
    s.pay("P1", 20_000, s.at(2026, 3, 31, 23, 59), ("c1",), payment_id="on-effective-date")
    s.pay("P1", 20_000, s.at(2026, 4, 1, 0, 5), ("c1",), payment_id="after")

    ledger = s.ledger("c1", s.at(2026, 6, 1))

    assert lot_ids(ledger) == ["premium:feb", "premium:on-effective-date"]
    assert ledger.balance == 400


def test_loy8_cancellation_known_only_after_the_run_takes_nothing_back(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.pay("P1", 20_000, s.at(2026, 2, 10), ("c1",), payment_id="feb")
    s.cancel_policy("P1", effective=date(2026, 2, 1), at=s.at(2026, 3, 15))  # retroactive

    assert s.ledger("c1", s.at(2026, 4, 1)).balance == 200


def test_loy8_pending_payment_of_a_contract_cancelled_before_the_run_is_not_credited(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.pay("P1", 20_000, s.at(2026, 2, 10), ("c1",), payment_id="feb")
    assert len(s.ledger("c1", s.at(2026, 2, 11)).pending) == 1
    s.cancel_policy("P1", effective=date(2026, 2, 1), at=s.at(2026, 2, 20))

    assert s.ledger("c1", s.at(2026, 2, 21)).pending == ()
    assert s.ledger("c1", s.at(2026, 4, 1)).balance == 0


# --- LOY-9 account cancellation -----------------------------------------------------------


def test_loy9_forfeit_on_account_cancellation_then_a_later_payment_credits_nothing(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.activate_eil("c1", s.at(2026, 1, 6))
    s.pay("P1", 30_000, s.at(2026, 1, 20), ("c1",), payment_id="jan")
    s.pay("P1", 30_000, s.at(2026, 2, 20), ("c1",), payment_id="feb")  # pending at cancel
    s.cancel_account("c1", s.at(2026, 2, 25))
    s.pay("P1", 30_000, s.at(2026, 3, 20), ("c1",), payment_id="after")
    s.use_service("c1", "app_login", s.at(2026, 3, 21))
    s.enrol("c1", s.at(2026, 3, 22))  # ignored: a cancelled account never rejoins

    ledger = s.ledger("c1", s.at(2026, 6, 1))

    assert ledger.membership.status is MembershipStatus.ENDED
    assert ledger.membership.ended_at == s.at(2026, 2, 25)
    assert ledger.balance == 0
    assert ledger.pending == ()
    forfeit = ledger.history[-1]
    assert (forfeit.kind, forfeit.rule, forfeit.points) == (EntryKind.FORFEIT, "LOY-9", -1300)
    assert isinstance(forfeit.reason, ForfeitReason)
    assert forfeit.reason.lots == (LotDraw("eil-bonus", 1000), LotDraw("premium:jan", 300))
    assert lot_ids(ledger) == ["eil-bonus", "premium:jan"]
    assert_consistent(ledger)


def test_loy9_late_fact_before_the_cancellation_is_forfeited_with_the_rest(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.cancel_account("c1", s.at(2026, 2, 25))
    s.activate_eil("c1", s.at(2026, 1, 6))  # arrives after the cancellation

    ledger = s.ledger("c1", s.at(2026, 3, 1))

    assert ledger.balance == 0
    assert [(e.kind, e.points) for e in ledger.history] == [
        (EntryKind.CREDIT, 1000),
        (EntryKind.FORFEIT, -1000),
    ]


# --- LOY-10 / LOY-13 statement ------------------------------------------------------------


def test_loy10_statement_explains_every_figure(scenario):
    s = scenario
    s.issue("P1", ("c1",), date(2022, 7, 1))
    s.enrol("c1", s.at(2025, 5, 1))
    s.use_service("c1", "app_login", s.at(2025, 5, 2))
    s.pay("P1", 4_200, s.at(2025, 12, 15), ("c1",), payment_id="dec")
    s.pay("P1", 4_200, s.at(2026, 1, 15), ("c1",), payment_id="jan")

    ledger = s.ledger("c1", s.at(2026, 1, 20))

    assert ledger.membership.status is MembershipStatus.ENROLLED
    assert ledger.membership.enrolled_at == s.at(2025, 5, 1)
    assert [(e.entry_id, e.kind, e.points, e.rule, e.balance_after) for e in ledger.history] == [
        ("campaign:app-2025", EntryKind.CREDIT, 250, "LOY-11", 250),
        ("premium:dec", EntryKind.CREDIT, 42, "LOY-2", 292),
        ("loyalty:2026", EntryKind.CREDIT, 400, "LOY-3", 692),
    ]
    campaign = ledger.history[0].reason
    assert isinstance(campaign, CampaignReason)
    assert (campaign.campaign_id, campaign.action, campaign.used_at) == (
        "app-2025",
        "app_login",
        s.at(2025, 5, 2),
    )
    assert [(p.lot_id, p.run_on, p.points) for p in ledger.pending] == [
        ("premium:jan", date(2026, 2, 1), 42)
    ]
    assert ledger.next_expiry == NextExpiry(date(2028, 12, 31), 250)
    assert [lot.expires_on for lot in ledger.lots] == [
        date(2028, 12, 31),
        date(2029, 12, 31),
        date(2029, 12, 31),
    ]
    assert_consistent(ledger)


def test_loy10_empty_statement_for_an_unknown_customer():
    ledger = build_ledger("nobody", [], datetime(2026, 1, 1, tzinfo=UTC), LoyaltyConfig())

    assert ledger.membership.status is MembershipStatus.NOT_ENROLLED
    assert (ledger.balance, ledger.lots, ledger.history, ledger.next_expiry) == (0, (), (), None)


# --- LOY-11 campaigns ---------------------------------------------------------------------


def test_loy11_campaign_credits_once_per_customer_inside_its_window(scenario):
    s = scenario
    s.register("c1", s.at(2025, 1, 1))
    s.use_service("c1", "app_login", s.at(2025, 1, 2))  # not enrolled yet: nothing
    s.enrol("c1", s.at(2025, 1, 3))
    s.use_service("c1", "claim_reported_online", s.at(2025, 2, 28, 23, 59))  # before window
    s.use_service("c1", "app_login", s.at(2025, 1, 4))
    s.use_service("c1", "app_login", s.at(2025, 1, 5))
    s.use_service("c1", "claim_reported_online", s.at(2025, 3, 1, 0, 0))
    s.use_service("c1", "unrewarded_action", s.at(2025, 3, 2))

    ledger = s.ledger("c1", s.at(2025, 6, 1))

    assert {lot.lot_id: (lot.points, lot.credited_on) for lot in ledger.lots} == {
        "campaign:app-2025": (250, date(2025, 1, 4)),
        "campaign:claim-online-2025": (500, date(2025, 3, 1)),
    }


def test_loy11_one_action_can_serve_several_campaigns(scenario):
    s = scenario
    s.config = LoyaltyConfig(
        campaigns=(
            Campaign("a", "login", 10, date(2025, 1, 1), date(2025, 12, 31)),
            Campaign("b", "login", 20, date(2025, 6, 1), date(2025, 6, 30)),
        )
    )
    s.enrol("c1", s.at(2025, 1, 3))
    s.use_service("c1", "login", s.at(2025, 6, 30, 23, 59))

    assert s.ledger("c1", s.at(2025, 7, 1)).balance == 30


# --- LOY-12 determinism -------------------------------------------------------------------


def test_loy12_reordered_and_duplicated_facts_give_the_same_ledger(scenario):
    s = scenario
    s.issue("P1", ("c1", "c2"), date(2020, 1, 1))
    s.enrol("c1", s.at(2024, 1, 2))
    s.activate_eil("c1", s.at(2024, 1, 3))
    s.pay("P1", 10_000, s.at(2024, 1, 31, 23, 59), ("c1", "c2"))
    s.redeem("c1", "cinema", s.at(2025, 2, 1))
    s.cancel_policy("P1", date(2025, 5, 1), s.at(2025, 4, 1))
    as_of = s.at(2026, 6, 1)
    expected = s.ledger("c1", as_of)

    shuffled = list(reversed(s.facts)) + s.facts[::2]

    assert build_ledger("c1", shuffled, as_of, s.config) == expected
    assert_consistent(expected)


def test_loy12_conflicting_facts_with_one_event_id_resolve_the_same_way_in_any_order(
    scenario,
):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    first = s.pay("P1", 10_000, s.at(2026, 2, 3), ("c1",), payment_id="x")
    clash = replace(first, amount_cents=90_000, payment_id="y")
    as_of = s.at(2026, 3, 2)

    one = build_ledger("c1", [*s.facts, clash], as_of, s.config)
    other = build_ledger("c1", [clash, *s.facts], as_of, s.config)

    assert one == other
    assert one.balance in (100, 900)


def test_loy12_late_fact_leaves_a_recorded_redemption_short_without_negative_balance(
    scenario,
):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.pay("P1", 500_000, s.at(2026, 3, 15), ("c1",), payment_id="mar")
    decision = s.redeem("c1", "arena", s.at(2026, 4, 10))
    assert isinstance(decision, RewardRedeemed)
    s.cancel_policy("P1", effective=date(2026, 3, 1), at=s.at(2026, 3, 25))  # arrives late

    ledger = s.ledger("c1", s.at(2026, 5, 1))

    redemption = ledger.history[-1]
    assert isinstance(redemption.reason, RedemptionReason)
    assert (redemption.points, redemption.reason.unbacked_points) == (0, 5000)
    assert ledger.balance == 0
    assert_consistent(ledger)


def test_loy12_decisions_taken_on_a_ledger_are_reproduced_by_the_fold(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.activate_eil("c1", s.at(2026, 1, 6))
    now = s.at(2026, 1, 7)
    decision = decide_redemption(s.ledger("c1", now), s.config.rewards["cinema"], "r-1", now)
    assert isinstance(decision, RewardRedeemed)
    s.add(decision)

    entry = s.ledger("c1", now).history[-1]
    assert isinstance(entry.reason, RedemptionReason)
    assert (entry.points, entry.reason.co_payment_cents, entry.reason.unbacked_points) == (
        -1000,
        1000,
        0,
    )
