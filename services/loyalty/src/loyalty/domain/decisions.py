"""Decisions the loyalty service takes itself: enrolment (LOY-1) and redemption (LOY-6).

Each returns either the fact to record or a refusal with a stable `reason_code` and a
German `detail` for the customer. The facts get deterministic event ids
(`enrolled:<customer_id>`, `reward-redeemed:<redemption_id>`), so retrying the same
command can never record it twice (LOY-12). Points cannot be bought or transferred: no
decision here does either (LOY-6).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from servicekit.clock import berlin_date

from loyalty.domain.config import Reward
from loyalty.domain.facts import CustomerRegistered, Enrolled, RewardRedeemed
from loyalty.domain.ledger import EntryKind, Ledger, MembershipStatus, redemption_entry_id

MINIMUM_AGE = 18
PROGRAMME_COUNTRY = "DE"


def enrolment_event_id(customer_id: str) -> str:
    return f"enrolled:{customer_id}"


def redemption_event_id(redemption_id: str) -> str:
    return f"reward-redeemed:{redemption_id}"


def _points(n: int) -> str:
    """German thousands separator: 1.000 Punkte."""
    return f"{n:,}".replace(",", ".") + (" Punkt" if n == 1 else " Punkte")


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


# --- LOY-1 ------------------------------------------------------------------------------


class EnrolmentRefusalCode(StrEnum):
    NOT_REGISTERED = "not_registered"
    ACCOUNT_CANCELLED = "account_cancelled"
    ALREADY_ENROLLED = "already_enrolled"
    NOT_NATURAL_PERSON = "not_natural_person"
    NOT_RESIDENT_IN_GERMANY = "not_resident_in_germany"
    UNDER_AGE = "under_age"


@dataclass(frozen=True, slots=True)
class EnrolmentRefused:
    reason_code: EnrolmentRefusalCode
    detail: str


def adult_from(birth_date: date) -> date:
    """The first Berlin day on which someone born on `birth_date` is 18. Born on 29
    February: 1 March in non-leap years (§§ 187, 188 BGB)."""
    year = birth_date.year + MINIMUM_AGE
    try:
        return birth_date.replace(year=year)
    except ValueError:
        return date(year, 3, 1)


def decide_enrolment(
    registration: CustomerRegistered | None,
    already_enrolled: bool,
    account_cancelled: bool,
    now: datetime,
) -> Enrolled | EnrolmentRefused:
    """LOY-1: registered portal users who are natural persons, at least 18 on the Berlin
    date of `now` and resident in Germany may enrol, free of charge, once."""
    _require_aware(now)
    if registration is None:
        return EnrolmentRefused(
            EnrolmentRefusalCode.NOT_REGISTERED,
            "Bitte registrieren Sie sich zuerst bei Meine Allianz; danach können Sie "
            "am Allianz Vorteilsprogramm teilnehmen.",
        )
    if account_cancelled:
        return EnrolmentRefused(
            EnrolmentRefusalCode.ACCOUNT_CANCELLED,
            "Ihr Zugang zu Meine Allianz wurde gekündigt. Eine Teilnahme am Allianz "
            "Vorteilsprogramm ist daher nicht möglich.",
        )
    if already_enrolled:
        return EnrolmentRefused(
            EnrolmentRefusalCode.ALREADY_ENROLLED,
            "Sie sind bereits für das Allianz Vorteilsprogramm angemeldet.",
        )
    if not registration.natural_person:
        return EnrolmentRefused(
            EnrolmentRefusalCode.NOT_NATURAL_PERSON,
            "Am Allianz Vorteilsprogramm können nur natürliche Personen teilnehmen.",
        )
    if registration.country.strip().upper() != PROGRAMME_COUNTRY:
        return EnrolmentRefused(
            EnrolmentRefusalCode.NOT_RESIDENT_IN_GERMANY,
            "Am Allianz Vorteilsprogramm können nur Personen mit Wohnsitz in der "
            "Bundesrepublik Deutschland teilnehmen.",
        )
    adult_on = adult_from(registration.birth_date)
    if berlin_date(now) < adult_on:
        return EnrolmentRefused(
            EnrolmentRefusalCode.UNDER_AGE,
            "Am Allianz Vorteilsprogramm können Sie ab 18 Jahren teilnehmen. Eine "
            f"Anmeldung ist ab dem {adult_on:%d.%m.%Y} möglich.",
        )
    return Enrolled(
        event_id=enrolment_event_id(registration.customer_id),
        occurred_at=now.astimezone(UTC),
        customer_id=registration.customer_id,
    )


# --- LOY-6 ------------------------------------------------------------------------------


class RedemptionRefusalCode(StrEnum):
    NOT_ENROLLED = "not_enrolled"
    MEMBERSHIP_ENDED = "membership_ended"
    ALREADY_REDEEMED = "already_redeemed"
    INSUFFICIENT_POINTS = "insufficient_points"


@dataclass(frozen=True, slots=True)
class RedemptionRefused:
    reason_code: RedemptionRefusalCode
    detail: str


def decide_redemption(
    ledger: Ledger, reward: Reward, redemption_id: str, now: datetime
) -> RewardRedeemed | RedemptionRefused:
    """LOY-6: redeem `reward` with the points of `ledger` (built as of `now`).

    Enough points: the reward's points are taken, no co-payment. Too few: when the reward
    allows it, every available point is taken and the shortfall is paid at the reward's
    rate per missing point; otherwise refused.
    """
    _require_aware(now)
    status = ledger.membership.status
    if status is MembershipStatus.NOT_ENROLLED:
        return RedemptionRefused(
            RedemptionRefusalCode.NOT_ENROLLED,
            "Sie sind nicht für das Allianz Vorteilsprogramm angemeldet. Bitte melden "
            "Sie sich zuerst an, um Prämien einzulösen.",
        )
    if status is MembershipStatus.ENDED:
        return RedemptionRefused(
            RedemptionRefusalCode.MEMBERSHIP_ENDED,
            "Ihre Teilnahme am Allianz Vorteilsprogramm ist beendet. Punkte können nicht "
            "mehr eingelöst werden.",
        )
    entry_id = redemption_entry_id(redemption_id)
    if any(e.kind is EntryKind.REDEMPTION and e.entry_id == entry_id for e in ledger.history):
        return RedemptionRefused(
            RedemptionRefusalCode.ALREADY_REDEEMED,
            "Diese Einlösung wurde bereits ausgeführt.",
        )
    cost = reward.points
    balance = ledger.balance
    if balance >= cost:
        points, co_payment_cents = cost, 0
    elif reward.co_payment_allowed:
        points, co_payment_cents = balance, (cost - balance) * reward.cents_per_missing_point
    else:
        return RedemptionRefused(
            RedemptionRefusalCode.INSUFFICIENT_POINTS,
            f"Für die Prämie „{reward.name}“ benötigen Sie {_points(cost)}; Ihr Punktestand "
            f"beträgt {_points(balance)}. Für diese Prämie ist keine Zuzahlung möglich.",
        )
    return RewardRedeemed(
        event_id=redemption_event_id(redemption_id),
        occurred_at=now.astimezone(UTC),
        customer_id=ledger.customer_id,
        redemption_id=redemption_id,
        reward_id=reward.reward_id,
        points=points,
        co_payment_cents=co_payment_cents,
    )
