"""The statement of one customer (LOY-10/LOY-13): what `build_ledger` returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from fractions import Fraction

from loyalty.domain.ledger.rules import Rule


class MembershipStatus(StrEnum):
    NOT_ENROLLED = "not_enrolled"
    ENROLLED = "enrolled"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Membership:
    """Not enrolled / enrolled since `enrolled_at` / ended at `ended_at` (LOY-9)."""

    status: MembershipStatus
    enrolled_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.status is MembershipStatus.ENROLLED


class EntryKind(StrEnum):
    CREDIT = "credit"
    REDEMPTION = "redemption"
    EXPIRY = "expiry"
    FORFEIT = "forfeit"


@dataclass(frozen=True, slots=True)
class PremiumReason:
    """LOY-2: floor(full_euros * rate) points for payment `payment_id`."""

    payment_id: str
    payment_event_id: str
    policy_id: str
    product_line: str
    paid_at: datetime
    amount_cents: int
    full_euros: int
    rate: Fraction


@dataclass(frozen=True, slots=True)
class LoyaltyReason:
    """LOY-3: policy `policy_id` held since `holding_since`; k = full_years + 1."""

    year: int
    policy_id: str
    holding_since: date
    full_years: int
    k: int


@dataclass(frozen=True, slots=True)
class EilBonusReason:
    """LOY-4: e-mail instead of letter activated after enrolment."""

    activation_event_id: str
    activated_at: datetime
    enrolled_at: datetime


@dataclass(frozen=True, slots=True)
class CampaignReason:
    """LOY-11: campaign `campaign_id` rewarded `action`."""

    campaign_id: str
    action: str
    service_event_id: str
    used_at: datetime


@dataclass(frozen=True, slots=True)
class LotDraw:
    """Points taken from one lot by a redemption, an expiry or a forfeit."""

    lot_id: str
    points: int


@dataclass(frozen=True, slots=True)
class RedemptionReason:
    """LOY-6: `points_requested` by the recorded redemption; `lots` says where the points
    came from; `unbacked_points` > 0 only when a late fact left the lots short (README,
    interpretation 10)."""

    redemption_id: str
    reward_id: str
    points_requested: int
    co_payment_cents: int
    lots: tuple[LotDraw, ...]
    unbacked_points: int


@dataclass(frozen=True, slots=True)
class ExpiryReason:
    """LOY-5: the lots that expired at the end of `expires_on`."""

    expires_on: date
    lots: tuple[LotDraw, ...]


@dataclass(frozen=True, slots=True)
class ForfeitReason:
    """LOY-9: the account was cancelled; every remaining point is forfeited."""

    account_cancelled_event_id: str
    lots: tuple[LotDraw, ...]


CreditReason = PremiumReason | LoyaltyReason | EilBonusReason | CampaignReason
Reason = CreditReason | RedemptionReason | ExpiryReason | ForfeitReason


@dataclass(frozen=True, slots=True)
class Lot:
    """LOY-5: one credit, valid until the end of `expires_on`; `remaining` is what is left
    after redemptions, expiry or forfeit."""

    lot_id: str
    rule: Rule
    reason: CreditReason
    credited_at: datetime
    credited_on: date
    expires_on: date
    points: int
    remaining: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """LOY-10: one line of the statement; `points` is signed, `balance_after` the balance
    right after it."""

    entry_id: str
    at: datetime
    kind: EntryKind
    points: int
    rule: Rule
    reason: Reason
    balance_after: int


@dataclass(frozen=True, slots=True)
class PendingCredit:
    """LOY-2: a payment awaiting the monthly run on `run_on`."""

    lot_id: str
    run_on: date
    points: int
    reason: PremiumReason


@dataclass(frozen=True, slots=True)
class NextExpiry:
    expires_on: date
    points: int


@dataclass(frozen=True, slots=True)
class Ledger:
    """LOY-10/LOY-13: the statement of one customer as of `as_of`.

    `balance` == sum of `remaining` over `lots`, always >= 0. `lots` lists every lot ever
    credited (in credit order), `history` every movement (in business order).
    """

    customer_id: str
    as_of: datetime
    membership: Membership
    balance: int
    lots: tuple[Lot, ...]
    next_expiry: NextExpiry | None
    pending: tuple[PendingCredit, ...]
    history: tuple[HistoryEntry, ...]


@dataclass(frozen=True, slots=True)
class ExpiryWarning:
    """LOY-5: `points` expire at the end of `expires_on`; `warning_id` (customer + expiry
    date) lets the service send the warning once."""

    warning_id: str
    customer_id: str
    expires_on: date
    points: int
