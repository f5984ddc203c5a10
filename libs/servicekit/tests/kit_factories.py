"""Test data and test doubles for the common library's tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka import ConsumerRecord
from contracts_schemas.common import ProductLine
from contracts_schemas.contracts import PremiumPaid
from servicekit.memory import memory_transactions
from servicekit.unit_of_work import Conflict, Transactions

U = TypeVar("U")


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


def conflicting_once_at_commit(uow: U) -> Transactions[U]:
    """In-memory transactions over `uow` whose first commit fails with a serialization
    conflict (rolling the state back); later ones commit."""
    inner = memory_transactions(uow)
    commits = 0

    @asynccontextmanager
    async def begin() -> AsyncIterator[U]:
        nonlocal commits
        async with inner.begin() as begun:
            yield begun
            commits += 1
            if commits == 1:
                raise Conflict("could not serialize access")

    return Transactions(begin)


def records_at(*positions: tuple[str, int, int]) -> list[ConsumerRecord[bytes, bytes]]:
    """Empty records at these (topic, partition, offset) positions."""
    return [
        ConsumerRecord(topic, partition, offset, 0, 0, None, b"", 0, 0, 0, [])
        for topic, partition, offset in positions
    ]
