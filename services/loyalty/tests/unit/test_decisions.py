"""Enrolment (LOY-1) and redemption (LOY-6) decisions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import loyalty.domain.decisions as decisions
import loyalty.domain.ledger as ledger_module
import pytest
from loyalty.domain.config import Reward
from loyalty.domain.decisions import (
    EnrolmentRefusalCode,
    EnrolmentRefused,
    RedemptionRefusalCode,
    RedemptionRefused,
    decide_enrolment,
    decide_redemption,
)
from loyalty.domain.facts import CustomerRegistered, Enrolled, RewardRedeemed
from loyalty.domain.ledger import RedemptionReason
from servicekit.clock import BERLIN

NOW = datetime(2026, 6, 1, 12, tzinfo=BERLIN)


def registration(
    birth_date: date = date(1990, 1, 1), country: str = "DE", natural_person: bool = True
) -> CustomerRegistered:
    return CustomerRegistered(
        "reg-1", datetime(2026, 1, 1, tzinfo=UTC), "c1", birth_date, country, natural_person
    )


# --- LOY-1 --------------------------------------------------------------------------------


def test_loy1_adult_natural_person_resident_in_germany_is_enrolled():
    now = datetime(2026, 6, 1, 12, tzinfo=BERLIN)

    decision = decide_enrolment(registration(), False, False, now)

    assert decision == Enrolled("enrolled:c1", now, "c1")
    assert decision.occurred_at.tzinfo is UTC


def test_loy1_refuses_a_17_year_old_and_accepts_on_the_berlin_18th_birthday():
    reg = registration(birth_date=date(2008, 6, 2))
    last_day_at_17 = datetime(2026, 6, 1, 23, 59, tzinfo=BERLIN)
    birthday_in_berlin = datetime(2026, 6, 1, 22, 30, tzinfo=UTC)  # 2 June 00:30 Berlin

    refused = decide_enrolment(reg, False, False, last_day_at_17)

    assert isinstance(refused, EnrolmentRefused)
    assert refused.reason_code is EnrolmentRefusalCode.UNDER_AGE
    assert "ab 18 Jahren" in refused.detail
    assert "02.06.2026" in refused.detail
    assert isinstance(decide_enrolment(reg, False, False, birthday_in_berlin), Enrolled)


def test_loy1_born_on_29_february_is_of_age_on_1_march_in_a_common_year():
    reg = registration(birth_date=date(2008, 2, 29))

    assert isinstance(
        decide_enrolment(reg, False, False, datetime(2026, 2, 28, 12, tzinfo=BERLIN)),
        EnrolmentRefused,
    )
    assert isinstance(
        decide_enrolment(reg, False, False, datetime(2026, 3, 1, 0, 1, tzinfo=BERLIN)), Enrolled
    )


def test_loy1_refuses_a_customer_living_abroad():
    decision = decide_enrolment(registration(country="AT"), False, False, NOW)

    assert isinstance(decision, EnrolmentRefused)
    assert decision.reason_code is EnrolmentRefusalCode.NOT_RESIDENT_IN_GERMANY
    assert "Wohnsitz in der Bundesrepublik Deutschland" in decision.detail


def test_loy1_refuses_a_legal_person():
    decision = decide_enrolment(registration(natural_person=False), False, False, NOW)

    assert isinstance(decision, EnrolmentRefused)
    assert decision.reason_code is EnrolmentRefusalCode.NOT_NATURAL_PERSON
    assert "natürliche Personen" in decision.detail


@pytest.mark.parametrize(
    ("reg", "already_enrolled", "account_cancelled", "code"),
    [
        (None, False, False, EnrolmentRefusalCode.NOT_REGISTERED),
        (registration(), True, False, EnrolmentRefusalCode.ALREADY_ENROLLED),
        (registration(), False, True, EnrolmentRefusalCode.ACCOUNT_CANCELLED),
    ],
)
def test_loy1_refuses_unregistered_already_enrolled_and_cancelled_accounts(
    reg, already_enrolled, account_cancelled, code
):
    decision = decide_enrolment(reg, already_enrolled, account_cancelled, NOW)

    assert isinstance(decision, EnrolmentRefused)
    assert decision.reason_code is code
    assert decision.detail


# --- LOY-6 --------------------------------------------------------------------------------


def test_loy6_enough_points_take_the_reward_price_without_co_payment(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.activate_eil("c1", s.at(2026, 1, 6))
    s.pay("P1", 60_000, s.at(2026, 1, 10), ("c1",))
    now = s.at(2026, 2, 2)

    decision = decide_redemption(s.ledger("c1", now), s.config.rewards["cinema"], "r-1", now)

    assert decision == RewardRedeemed("reward-redeemed:r-1", now, "c1", "r-1", "cinema", 1500, 0)
    s.add(decision)
    assert s.ledger("c1", now).balance == 100


def test_loy6_shortfall_is_paid_by_co_payment_at_the_rewards_rate(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.activate_eil("c1", s.at(2026, 1, 6))
    now = s.at(2026, 1, 7)

    decision = s.redeem("c1", "cinema", now)

    assert isinstance(decision, RewardRedeemed)
    assert (decision.points, decision.co_payment_cents) == (1000, 500 * 2)
    ledger = s.ledger("c1", now)
    assert ledger.balance == 0
    reason = ledger.history[-1].reason
    assert isinstance(reason, RedemptionReason)
    assert (reason.reward_id, reason.co_payment_cents) == ("cinema", 1000)


def test_loy6_refused_when_points_are_short_and_no_co_payment_is_allowed(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.activate_eil("c1", s.at(2026, 1, 6))

    decision = s.redeem("c1", "arena", s.at(2026, 1, 7))

    assert isinstance(decision, RedemptionRefused)
    assert decision.reason_code is RedemptionRefusalCode.INSUFFICIENT_POINTS
    assert "5.000 Punkte" in decision.detail
    assert "1.000 Punkte" in decision.detail
    assert "keine Zuzahlung" in decision.detail


def test_loy6_refused_when_not_enrolled_or_membership_ended(scenario):
    s = scenario
    s.register("c1", s.at(2026, 1, 1))
    reward = Reward("voucher", "Gutschein", 100, True, 1)
    now = s.at(2026, 1, 2)

    not_enrolled = decide_redemption(s.ledger("c1", now), reward, "r-1", now)
    s.enrol("c1", s.at(2026, 1, 3))
    s.cancel_account("c1", s.at(2026, 1, 4))
    later = s.at(2026, 1, 5)
    ended = decide_redemption(s.ledger("c1", later), reward, "r-2", later)

    assert isinstance(not_enrolled, RedemptionRefused)
    assert not_enrolled.reason_code is RedemptionRefusalCode.NOT_ENROLLED
    assert isinstance(ended, RedemptionRefused)
    assert ended.reason_code is RedemptionRefusalCode.MEMBERSHIP_ENDED


def test_loy6_the_same_redemption_is_not_recorded_twice(scenario):
    s = scenario
    s.enrol("c1", s.at(2026, 1, 5))
    s.activate_eil("c1", s.at(2026, 1, 6))
    now = s.at(2026, 1, 7)
    reward = Reward("voucher", "Gutschein", 100, False, 0)
    first = decide_redemption(s.ledger("c1", now), reward, "r-1", now)
    assert isinstance(first, RewardRedeemed)
    s.add(first)

    again = decide_redemption(s.ledger("c1", now), reward, "r-1", now)

    assert isinstance(again, RedemptionRefused)
    assert again.reason_code is RedemptionRefusalCode.ALREADY_REDEEMED


def test_loy6_points_can_neither_be_bought_nor_transferred():
    public = [
        name
        for module in (decisions, ledger_module)
        for name in dir(module)
        if not name.startswith("_")
    ]

    assert not [n for n in public if any(w in n.lower() for w in ("buy", "purchase", "transfer"))]
