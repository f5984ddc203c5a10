"""The loyalty rules' figures and the ids they give lots and history entries (LOY-2..LOY-11).

How the rules are read where the specification is silent: services/loyalty/README.md.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum


class Rule(StrEnum):
    """The programme rule a lot or history entry comes from (the statement shows the id)."""

    PREMIUM = "LOY-2"
    LOYALTY = "LOY-3"
    EMAIL_INSTEAD_OF_LETTER = "LOY-4"
    EXPIRY = "LOY-5"
    REDEMPTION = "LOY-6"
    FORFEIT = "LOY-9"
    CAMPAIGN = "LOY-11"


EIL_BONUS_POINTS = 1000
LOYALTY_POINTS_PER_YEAR = 100
LOYALTY_POINTS_MAX = 1000
EIL_BONUS_LOT_ID = "eil-bonus"
FORFEIT_ENTRY_ID = "forfeit"


def premium_lot_id(payment_id: str) -> str:
    return f"premium:{payment_id}"


def loyalty_lot_id(year: int) -> str:
    return f"loyalty:{year}"


def campaign_lot_id(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def redemption_entry_id(redemption_id: str) -> str:
    return f"redemption:{redemption_id}"


def expiry_entry_id(expires_on: date) -> str:
    return f"expiry:{expires_on.isoformat()}"


def lot_expires_on(credited_on: date) -> date:
    """LOY-5: valid at least 36 months, until the end of the year in which they end."""
    return date(credited_on.year + 3, 12, 31)


def monthly_run_date(paid_on: date) -> date:
    """LOY-2: the run on the 1st of the month after the (Berlin) month of payment."""
    if paid_on.month == 12:
        return date(paid_on.year + 1, 1, 1)
    return date(paid_on.year, paid_on.month + 1, 1)


def full_years_between(start: date, day: date) -> int:
    """Completed years from `start` to `day` (0 when `day` precedes an anniversary)."""
    years = day.year - start.year
    if (day.month, day.day) < (start.month, start.day):
        years -= 1
    return max(years, 0)


def loyalty_points_for(full_years: int) -> int:
    """LOY-3: k = full years + 1, points = min(100 * k, 1000)."""
    return min(LOYALTY_POINTS_PER_YEAR * (full_years + 1), LOYALTY_POINTS_MAX)


def aware_utc(at: datetime) -> datetime:
    """`at` in UTC; naive datetimes are refused (business time is always an instant)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    return at.astimezone(UTC)
