"""The facts the loyalty ledger is folded from.

Each fact is what some service recorded (identity, contracts, documents, loyalty itself),
reduced to the fields the loyalty rules need. Every fact carries its `event_id` (the
identity used to drop duplicates, LOY-12) and `occurred_at`, the business time at which
it happened: an aware datetime, normalised to UTC on construction. Ordering between
facts of different streams always uses `occurred_at`, never arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime


def _utc(fact: object, at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{type(fact).__name__}.occurred_at must be timezone-aware")
    if at.tzinfo is not UTC:
        object.__setattr__(fact, "occurred_at", at.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class CustomerRegistered:
    """Identity: a portal user registered (ID-1); the data LOY-1 checks."""

    event_id: str
    occurred_at: datetime
    customer_id: str
    birth_date: date
    country: str
    natural_person: bool

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class Enrolled:
    """Loyalty: the customer joined the programme (decided by `decide_enrolment`, LOY-1)."""

    event_id: str
    occurred_at: datetime
    customer_id: str

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class PolicyIssued:
    """Contracts: a policy was issued, or issued again (reinstated / re-taken).

    Issuing a policy again starts a new term: every holding of it restarts (LOY-3).
    """

    event_id: str
    occurred_at: datetime
    policy_id: str
    product_line: str
    point_relevant: bool
    policyholder_ids: tuple[str, ...]
    start_date: date

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class PolicyholdersChanged:
    """Contracts: the policyholders from `effective_date` on (added ones hold from then,
    removed ones stop holding then)."""

    event_id: str
    occurred_at: datetime
    policy_id: str
    policyholder_ids: tuple[str, ...]
    effective_date: date

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class PremiumPaid:
    """Contracts: a premium was paid; `occurred_at` is the business time of the payment and
    `policyholder_ids` are the holders at that time (each earns the full points, LOY-7)."""

    event_id: str
    occurred_at: datetime
    payment_id: str
    policy_id: str
    product_line: str
    point_relevant: bool
    amount_cents: int
    policyholder_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class PolicyCancelled:
    """Contracts: the policy's current term ends on `effective_date` (LOY-8)."""

    event_id: str
    occurred_at: datetime
    policy_id: str
    effective_date: date

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class EmailInsteadOfLetterActivated:
    """Documents: e-mail instead of letter turned on (DOC-4; LOY-4 bonus)."""

    event_id: str
    occurred_at: datetime
    customer_id: str

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class EmailInsteadOfLetterDeactivated:
    """Documents: e-mail instead of letter turned off (DOC-4); never changes points."""

    event_id: str
    occurred_at: datetime
    customer_id: str

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class AccountCancelled:
    """Identity: the portal account was cancelled (ID-9): membership ends, points are
    forfeited (LOY-9)."""

    event_id: str
    occurred_at: datetime
    customer_id: str

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class ServiceUsed:
    """Any service: the customer performed `action`, which campaigns may reward (LOY-11)."""

    event_id: str
    occurred_at: datetime
    customer_id: str
    action: str

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class RewardRedeemed:
    """Loyalty: a reward was redeemed (decided by `decide_redemption`, LOY-6)."""

    event_id: str
    occurred_at: datetime
    customer_id: str
    redemption_id: str
    reward_id: str
    points: int
    co_payment_cents: int

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


Fact = (
    CustomerRegistered
    | Enrolled
    | PolicyIssued
    | PolicyholdersChanged
    | PremiumPaid
    | PolicyCancelled
    | EmailInsteadOfLetterActivated
    | EmailInsteadOfLetterDeactivated
    | AccountCancelled
    | ServiceUsed
    | RewardRedeemed
)
