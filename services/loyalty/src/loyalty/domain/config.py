"""Programme configuration the rules are evaluated with: premium rates (LOY-2, CT-5),
campaigns (LOY-11), the reward catalogue (LOY-6) and the expiry-warning lead (LOY-5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Campaign:
    """LOY-11: `points` for the first `action` a customer performs between `starts_on` and
    `ends_on` (Berlin dates, both inclusive); once per customer and campaign."""

    campaign_id: str
    action: str
    points: int
    starts_on: date
    ends_on: date

    def __post_init__(self) -> None:
        if self.points <= 0:
            raise ValueError(f"campaign {self.campaign_id}: points must be positive")
        if self.ends_on < self.starts_on:
            raise ValueError(f"campaign {self.campaign_id}: ends before it starts")

    def active_on(self, day: date) -> bool:
        return self.starts_on <= day <= self.ends_on


@dataclass(frozen=True, slots=True)
class Reward:
    """LOY-6: a catalogue reward costing `points`; when `co_payment_allowed`, each missing
    point can be paid for with `cents_per_missing_point`."""

    reward_id: str
    name: str
    points: int
    co_payment_allowed: bool
    cents_per_missing_point: int

    def __post_init__(self) -> None:
        if self.points <= 0:
            raise ValueError(f"reward {self.reward_id}: points must be positive")
        if self.cents_per_missing_point < 0:
            raise ValueError(f"reward {self.reward_id}: co-payment rate must not be negative")


@dataclass(frozen=True, slots=True)
class LoyaltyConfig:
    """`premium_rates`: points per full euro paid, per product line (LOY-2); product lines
    missing from it earn `default_premium_rate` (1 point per full euro)."""

    premium_rates: Mapping[str, Fraction] = field(default_factory=dict)
    campaigns: tuple[Campaign, ...] = ()
    rewards: Mapping[str, Reward] = field(default_factory=dict)
    expiry_warning_lead_days: int = 90
    default_premium_rate: Fraction = Fraction(1)
    _campaigns_by_action: Mapping[str, tuple[Campaign, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        rates = {**self.premium_rates}
        if any(rate < 0 for rate in rates.values()) or self.default_premium_rate < 0:
            raise ValueError("premium rates must not be negative")
        if self.expiry_warning_lead_days < 0:
            raise ValueError("expiry_warning_lead_days must not be negative")
        ids = [c.campaign_id for c in self.campaigns]
        if len(ids) != len(set(ids)):
            raise ValueError("campaign ids must be unique")
        by_action: dict[str, tuple[Campaign, ...]] = {}
        for campaign in self.campaigns:
            by_action[campaign.action] = (*by_action.get(campaign.action, ()), campaign)
        object.__setattr__(self, "premium_rates", MappingProxyType(rates))
        object.__setattr__(self, "rewards", MappingProxyType({**self.rewards}))
        object.__setattr__(self, "_campaigns_by_action", MappingProxyType(by_action))

    def premium_rate(self, product_line: str) -> Fraction:
        """LOY-2 / CT-5: points per full euro for a product line."""
        return self.premium_rates.get(product_line, self.default_premium_rate)

    def campaigns_for(self, action: str) -> tuple[Campaign, ...]:
        """LOY-11: the campaigns rewarding `action`, in configuration order."""
        return self._campaigns_by_action.get(action, ())
