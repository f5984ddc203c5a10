"""Events of the loyalty context (LOY-1..LOY-13), topic `portal.loyalty.account.v1`."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import Field

from contracts_schemas.base import Event, Identifier, Text


class LoyaltyEvent(Event):
    context: ClassVar[str] = "loyalty"

    customer_id: Identifier = Field(min_length=1, max_length=100)


class CustomerEnrolled(LoyaltyEvent):
    pass


class PointsCredited(LoyaltyEvent):
    lot_id: Identifier
    points: int = Field(gt=0)
    rule: Text
    credited_on: date
    expires_on: date


class RewardRedeemed(LoyaltyEvent):
    redemption_id: Identifier
    reward_id: Identifier
    points: int = Field(ge=0)
    co_payment_cents: int = Field(ge=0)


class PointsExpired(LoyaltyEvent):
    points: int = Field(gt=0)
    expired_on: date


class PointsForfeited(LoyaltyEvent):
    points: int = Field(ge=0)


class PointsExpiryWarningIssued(LoyaltyEvent):
    """LOY-5: points that will expire at `expires_on` unless redeemed; the notifier e-mails it."""

    points: int = Field(gt=0)
    expires_on: date
