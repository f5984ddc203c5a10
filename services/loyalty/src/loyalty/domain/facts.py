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
    if at.tzinfo is UTC:  # the common case (read from the database): nothing to do
        return
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{type(fact).__name__}.occurred_at must be timezone-aware")
    object.__setattr__(fact, "occurred_at", at.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class _Fact:
    """What every fact carries: its identity and its business time (normalised to UTC)."""

    event_id: str
    occurred_at: datetime

    def __post_init__(self) -> None:
        _utc(self, self.occurred_at)


@dataclass(frozen=True, slots=True)
class CustomerRegistered(_Fact):
    """Identity: a portal user registered (ID-1); the data LOY-1 checks."""

    customer_id: str
    birth_date: date
    country: str
    natural_person: bool


@dataclass(frozen=True, slots=True)
class Enrolled(_Fact):
    """Loyalty: the customer joined the programme (decided by `decide_enrolment`, LOY-1)."""

    customer_id: str


@dataclass(frozen=True, slots=True)
class PolicyIssued(_Fact):
    """Contracts: a policy was issued, or issued again (reinstated / re-taken).

    Issuing a policy again starts a new term: every holding of it restarts (LOY-3).
    """

    policy_id: str
    product_line: str
    point_relevant: bool
    policyholder_ids: tuple[str, ...]
    start_date: date


@dataclass(frozen=True, slots=True)
class PolicyholdersChanged(_Fact):
    """Contracts: the policyholders from `effective_date` on (added ones hold from then,
    removed ones stop holding then)."""

    policy_id: str
    policyholder_ids: tuple[str, ...]
    effective_date: date


@dataclass(frozen=True, slots=True)
class PremiumPaid(_Fact):
    """Contracts: a premium was paid; `occurred_at` is the business time of the payment and
    `policyholder_ids` are the holders at that time (each earns the full points, LOY-7)."""

    payment_id: str
    policy_id: str
    product_line: str
    point_relevant: bool
    amount_cents: int
    policyholder_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PolicyCancelled(_Fact):
    """Contracts: the policy's current term ends on `effective_date` (LOY-8)."""

    policy_id: str
    effective_date: date


@dataclass(frozen=True, slots=True)
class EmailInsteadOfLetterActivated(_Fact):
    """Documents: e-mail instead of letter turned on (DOC-4; LOY-4 bonus)."""

    customer_id: str


@dataclass(frozen=True, slots=True)
class EmailInsteadOfLetterDeactivated(_Fact):
    """Documents: e-mail instead of letter turned off (DOC-4); never changes points."""

    customer_id: str


@dataclass(frozen=True, slots=True)
class AccountCancelled(_Fact):
    """Identity: the portal account was cancelled (ID-9): membership ends, points are
    forfeited (LOY-9)."""

    customer_id: str


@dataclass(frozen=True, slots=True)
class ServiceUsed(_Fact):
    """Any service: the customer performed `action`, which campaigns may reward (LOY-11)."""

    customer_id: str
    action: str


@dataclass(frozen=True, slots=True)
class RewardRedeemed(_Fact):
    """Loyalty: a reward was redeemed (decided by `decide_redemption`, LOY-6)."""

    customer_id: str
    redemption_id: str
    reward_id: str
    points: int
    co_payment_cents: int


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

CustomerFact = tuple[str, Fact]
"""A fact and one customer it concerns (a policy event concerns every policyholder)."""
