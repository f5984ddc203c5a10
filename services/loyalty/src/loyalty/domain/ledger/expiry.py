"""LOY-5: the expiry warning due for a statement."""

from __future__ import annotations

from datetime import date, datetime

from servicekit.clock import berlin_date

from loyalty.domain.config import LoyaltyConfig
from loyalty.domain.ledger.rules import aware_utc
from loyalty.domain.ledger.statement import ExpiryWarning, Ledger


def expiry_warnings(
    ledger: Ledger, as_of: datetime, config: LoyaltyConfig
) -> tuple[ExpiryWarning, ...]:
    """LOY-5: the warning for the points expiring at the end of the current Berlin year,
    when `as_of` is at most `expiry_warning_lead_days` before that 31 December; empty
    otherwise. `ledger` must be built as of `as_of`."""
    today = berlin_date(aware_utc(as_of))
    year_end = date(today.year, 12, 31)
    if (year_end - today).days > config.expiry_warning_lead_days:
        return ()
    points = sum(lot.remaining for lot in ledger.lots if lot.expires_on == year_end)
    if points <= 0:
        return ()
    warning_id = f"expiry-warning:{ledger.customer_id}:{year_end.isoformat()}"
    return (ExpiryWarning(warning_id, ledger.customer_id, year_end, points),)
