"""Events of the contracts context (CT-1..CT-5), topic `portal.contracts.policy.v1`."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import Field

from contracts_schemas.base import Event, Identifier, Text
from contracts_schemas.common import Carrier, PolicyholderDetails, PostalAddress, ProductLine


class PolicyEvent(Event):
    context: ClassVar[str] = "contracts"

    policy_id: Identifier = Field(min_length=1, max_length=100)


class PolicyIssued(PolicyEvent):
    policy_number: Identifier = Field(min_length=1, max_length=100)
    product_line: ProductLine
    carrier: Carrier
    point_relevant: bool
    policyholder_ids: tuple[Identifier, ...] = Field(min_length=1)
    insured_person_ids: tuple[Identifier, ...] = ()
    visible_to_insured: bool = False
    start_date: date
    tariff: Text = Field(default="", max_length=200)
    annual_premium_cents: int = Field(default=0, ge=0)
    #: ID-3, optional (added within v1; empty in older events): each policyholder's name,
    #: birth date and postal address as upstream sent them, for identity's match and the
    #: activation letter. Personal data: consumers must not log it.
    policyholders: tuple[PolicyholderDetails, ...] = ()


class PremiumPaid(PolicyEvent):
    payment_id: Identifier = Field(min_length=1, max_length=100)
    product_line: ProductLine
    point_relevant: bool
    amount_cents: int = Field(gt=0)
    policyholder_ids: tuple[Identifier, ...] = Field(min_length=1)


class PolicyCancelled(PolicyEvent):
    effective_date: date
    policyholder_ids: tuple[Identifier, ...] = Field(min_length=1)


class PolicyholdersChanged(PolicyEvent):
    policyholder_ids: tuple[Identifier, ...] = Field(min_length=1)
    previous_policyholder_ids: tuple[Identifier, ...] = ()
    effective_date: date
    #: ID-3, optional (added within v1): the new holders' details, as on PolicyIssued.
    policyholders: tuple[PolicyholderDetails, ...] = ()


class BankDetailsChanged(PolicyEvent):
    """Only the masked IBAN travels; the full IBAN stays in the contracts service."""

    iban_masked: Text = Field(min_length=4, max_length=40)


class MoveReported(PolicyEvent):
    new_address: PostalAddress
    moved_on: date
