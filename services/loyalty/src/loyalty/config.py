"""Settings of the loyalty service (PORTAL_* environment variables).

The programme's figures are configuration (LOY-2 rates, LOY-6 catalogue, LOY-11
campaigns); the defaults below are what a fresh installation offers.
"""

from __future__ import annotations

from datetime import date
from fractions import Fraction

from pydantic import BaseModel, Field
from servicekit.settings import ServiceSettings

from loyalty.domain.config import Campaign, LoyaltyConfig, Reward


class RewardSetting(BaseModel):
    name: str
    points: int = Field(gt=0)
    co_payment_allowed: bool = False
    cents_per_missing_point: int = Field(default=1, ge=0)


class CampaignSetting(BaseModel):
    action: str
    points: int = Field(gt=0)
    starts_on: date
    ends_on: date


DEFAULT_REWARDS = {
    "cinema-voucher": RewardSetting(
        name="Kinogutschein", points=1500, co_payment_allowed=True, cents_per_missing_point=1
    ),
    "coffee-machine": RewardSetting(
        name="Kaffeevollautomat", points=25000, co_payment_allowed=True, cents_per_missing_point=1
    ),
    "charity-donation": RewardSetting(name="Spende an die Allianz Foundation", points=1000),
}


class LoyaltySettings(ServiceSettings):
    service_name: str = "loyalty"
    http_port: int = 8002
    premium_rates: dict[str, str] = Field(default_factory=dict)  # product line -> "1" or "3/2"
    rewards: dict[str, RewardSetting] = Field(default_factory=lambda: dict(DEFAULT_REWARDS))
    campaigns: dict[str, CampaignSetting] = Field(default_factory=dict)
    expiry_warning_lead_days: int = 90
    run_scheduler: bool = True

    def programme(self) -> LoyaltyConfig:
        return LoyaltyConfig(
            premium_rates={line: Fraction(rate) for line, rate in self.premium_rates.items()},
            rewards={
                rid: Reward(rid, r.name, r.points, r.co_payment_allowed, r.cents_per_missing_point)
                for rid, r in self.rewards.items()
            },
            campaigns=tuple(
                Campaign(cid, c.action, c.points, c.starts_on, c.ends_on)
                for cid, c in self.campaigns.items()
            ),
            expiry_warning_lead_days=self.expiry_warning_lead_days,
        )
