"""Messages as identity and the upstream insurance systems publish them."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from contracts_schemas import identity, upstream
from contracts_schemas.common import Carrier, PostalAddress, ProductLine


def registered(
    customer_id: str, at: datetime, birth: date = date(1980, 5, 17)
) -> identity.CustomerRegistered:
    return identity.CustomerRegistered(
        event_id=uuid.uuid4(), aggregate_id=customer_id, aggregate_version=1, occurred_at=at,
        customer_ids=(customer_id,), customer_id=customer_id, first_name="Erika",
        last_name="Mustermann", birth_date=birth,
        address=PostalAddress(recipient="Erika Mustermann", street="Königinstraße 28",
                              postal_code="80802", city="München"),
        email=f"{customer_id}@example.org",
    )  # fmt: skip


def account_activated(customer_id: str, at: datetime) -> identity.AccountActivated:
    return identity.AccountActivated(
        event_id=uuid.uuid4(), aggregate_id=customer_id, aggregate_version=2, occurred_at=at,
        customer_ids=(customer_id,), customer_id=customer_id,
    )  # fmt: skip


def account_cancelled(customer_id: str, at: datetime) -> identity.AccountCancelled:
    return identity.AccountCancelled(
        event_id=uuid.uuid4(), aggregate_id=customer_id, aggregate_version=3, occurred_at=at,
        customer_ids=(customer_id,), customer_id=customer_id,
    )  # fmt: skip


def policy_issued(
    number: str, holders: tuple[str, ...], start: date, at: datetime,
    line: ProductLine = ProductLine.HOUSEHOLD_CONTENTS,
) -> upstream.PolicyIssuedUpstream:  # fmt: skip
    return upstream.PolicyIssuedUpstream(
        message_id=f"pa-{uuid.uuid4().hex}", source_system="policy-admin", occurred_at=at,
        policy_number=number, product_line=line, carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG,
        policyholder_ids=holders, start_date=start, tariff="Hausrat Komfort",
        annual_premium_cents=14_460,
    )  # fmt: skip


def premium_paid(number: str, cents: int, at: datetime) -> upstream.PremiumPaidUpstream:
    return upstream.PremiumPaidUpstream(
        message_id=f"co-{uuid.uuid4().hex}", source_system="collections", occurred_at=at,
        policy_number=number, payment_id=f"pay-{uuid.uuid4().hex[:10]}", amount_cents=cents,
    )  # fmt: skip
