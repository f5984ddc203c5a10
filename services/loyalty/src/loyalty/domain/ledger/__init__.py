"""The points ledger of one customer: a pure fold of facts and the business calendar.

`build_ledger(customer_id, facts, as_of, config)` is the single source of every balance
(LOY-12): the set of the customer's facts (duplicates by `event_id` dropped), in business
order (`occurred_at`, a fixed kind priority, `event_id`), interleaved with the
Europe/Berlin calendar up to `as_of`. The calendar, the fact priority and every
interpretation of the rules are written once, in services/loyalty/README.md
("The ledger: calendar and interpretations").

- `rules`: the `Rule` ids, the figures and the lot / entry ids;
- `statement`: the `Ledger` and its parts (what customers see, LOY-10);
- `fold`: `build_ledger`, and `snapshot_ledger` to go on from (long histories);
- `expiry`: the LOY-5 warning due for a statement.
"""

from loyalty.domain.ledger.expiry import expiry_warnings
from loyalty.domain.ledger.fold import LedgerSnapshot, build_ledger, snapshot_ledger
from loyalty.domain.ledger.rules import (
    EIL_BONUS_LOT_ID,
    EIL_BONUS_POINTS,
    FORFEIT_ENTRY_ID,
    LOYALTY_POINTS_MAX,
    LOYALTY_POINTS_PER_YEAR,
    Rule,
    campaign_lot_id,
    expiry_entry_id,
    full_years_between,
    lot_expires_on,
    loyalty_lot_id,
    loyalty_points_for,
    monthly_run_date,
    premium_lot_id,
    redemption_entry_id,
)
from loyalty.domain.ledger.statement import (
    CampaignReason,
    CreditReason,
    EilBonusReason,
    EntryKind,
    ExpiryReason,
    ExpiryWarning,
    ForfeitReason,
    HistoryEntry,
    Ledger,
    Lot,
    LotDraw,
    LoyaltyReason,
    Membership,
    MembershipStatus,
    NextExpiry,
    PendingCredit,
    PremiumReason,
    Reason,
    RedemptionReason,
)

__all__ = [
    "EIL_BONUS_LOT_ID",
    "EIL_BONUS_POINTS",
    "FORFEIT_ENTRY_ID",
    "LOYALTY_POINTS_MAX",
    "LOYALTY_POINTS_PER_YEAR",
    "CampaignReason",
    "CreditReason",
    "EilBonusReason",
    "EntryKind",
    "ExpiryReason",
    "ExpiryWarning",
    "ForfeitReason",
    "HistoryEntry",
    "Ledger",
    "LedgerSnapshot",
    "Lot",
    "LotDraw",
    "LoyaltyReason",
    "Membership",
    "MembershipStatus",
    "NextExpiry",
    "PendingCredit",
    "PremiumReason",
    "Reason",
    "RedemptionReason",
    "Rule",
    "build_ledger",
    "campaign_lot_id",
    "expiry_entry_id",
    "expiry_warnings",
    "full_years_between",
    "lot_expires_on",
    "loyalty_lot_id",
    "loyalty_points_for",
    "monthly_run_date",
    "premium_lot_id",
    "redemption_entry_id",
    "snapshot_ledger",
]
