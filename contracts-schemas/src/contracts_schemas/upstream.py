"""Messages from upstream insurance systems into the contracts service (CT-1).

Delivered on the ingestion topic `upstream.contracts.v1` (CloudEvents binary mode) or
posted to the contracts service's internal HTTP API. `message_id` deduplicates.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field

from contracts_schemas.base import Identifier, Text, UpstreamMessage
from contracts_schemas.common import Carrier, PolicyholderDetails, ProductLine


class PolicyIssuedUpstream(UpstreamMessage):
    product_line: ProductLine
    carrier: Carrier
    policyholder_ids: tuple[Identifier, ...] = Field(min_length=1)
    insured_person_ids: tuple[Identifier, ...] = ()
    visible_to_insured: bool = False
    start_date: date
    tariff: Text = Field(default="", max_length=200)
    annual_premium_cents: int = Field(default=0, ge=0)
    #: ID-3, optional (added within v1): name, birth date and postal address of each
    #: policyholder, one entry per id of `policyholder_ids`. Personal data: never logged.
    policyholders: tuple[PolicyholderDetails, ...] = ()


class PremiumPaidUpstream(UpstreamMessage):
    payment_id: Identifier = Field(min_length=1, max_length=100)
    amount_cents: int = Field(gt=0)


class PolicyCancelledUpstream(UpstreamMessage):
    effective_date: date


class PolicyholdersChangedUpstream(UpstreamMessage):
    policyholder_ids: tuple[Identifier, ...] = Field(min_length=1)
    effective_date: date
    #: ID-3, optional (added within v1): as on PolicyIssuedUpstream, for the new holders.
    policyholders: tuple[PolicyholderDetails, ...] = ()
