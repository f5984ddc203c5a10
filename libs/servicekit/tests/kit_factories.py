"""Test data for the common library's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts_schemas.common import ProductLine
from contracts_schemas.contracts import PremiumPaid


def premium_paid(
    policy_id: str, version: int, amount_cents: int = 1000, customer: str = "c-1"
) -> PremiumPaid:
    return PremiumPaid(
        event_id=uuid.uuid4(),
        aggregate_id=policy_id,
        aggregate_version=version,
        occurred_at=datetime(2026, 3, 15, 10, 0, tzinfo=UTC),
        customer_ids=(customer,),
        policy_id=policy_id,
        payment_id=f"pay-{uuid.uuid4().hex[:8]}",
        product_line=ProductLine.MOTOR,
        point_relevant=True,
        amount_cents=amount_cents,
        policyholder_ids=(customer,),
    )
