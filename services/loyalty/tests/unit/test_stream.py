"""The stream entrypoint on FastStream's in-memory test broker: CloudEvents published to
loyalty's input topics reach `Loyalty.record_facts` through the inbox (LOY-12)."""

from __future__ import annotations

from datetime import datetime

from contracts_schemas import topic_of
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from faststream.kafka import KafkaBroker, TestKafkaBroker
from loyalty.adapters.memory import InMemoryLoyaltyUnitOfWork
from loyalty.config import LoyaltySettings
from loyalty.domain.config import LoyaltyConfig
from loyalty.entrypoints.stream import FACTS_GROUP, subscribe
from loyalty.handlers import Loyalty
from loyalty_harness import email_instead_of_letter, premium_paid, registered
from servicekit.clock import BERLIN, FixedClock
from servicekit.memory import memory_transactions
from servicekit.stream import EventStream


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def loyalty_stream() -> tuple[KafkaBroker, InMemoryLoyaltyUnitOfWork]:
    uow = InMemoryLoyaltyUnitOfWork()
    stream = EventStream(LoyaltySettings(), memory_transactions(uow))
    broker = subscribe(stream, Loyalty(LoyaltyConfig(), FixedClock(at(2026, 1, 3))))
    return broker, uow


async def send(broker: KafkaBroker, message: Contract, source: str = "/identity") -> None:
    cloud_event = encode(message, source)
    await broker.publish(
        cloud_event.data, topic_of(message), key=(cloud_event.subject or "").encode(),
        headers=dict(cloud_event.header_pairs()),
    )  # fmt: skip


async def test_loy12_published_facts_are_stored_once_per_customer() -> None:
    broker, uow = loyalty_stream()
    registration = registered("anna", at(2026, 1, 2))
    paid = premium_paid("KFZ-1", ("anna", "ben"), 9_999, at(2026, 1, 15), 2)
    bonus = email_instead_of_letter("anna", at(2026, 1, 4))
    async with TestKafkaBroker(broker) as test_broker:
        await send(test_broker, registration)
        await send(test_broker, paid, source="/contracts")
        await send(test_broker, bonus, source="/documents")

    assert sorted(uow.facts.rows) == sorted(
        [
            ("anna", str(registration.event_id)),
            ("anna", str(paid.event_id)),
            ("ben", str(paid.event_id)),
            ("anna", str(bonus.event_id)),
        ]
    )
    assert len(uow.inbox.seen[FACTS_GROUP]) == 3


async def test_loy12_a_redelivered_event_is_absorbed_by_the_inbox() -> None:
    broker, uow = loyalty_stream()
    registration = registered("anna", at(2026, 1, 2))
    async with TestKafkaBroker(broker) as test_broker:
        await send(test_broker, registration)
        await send(test_broker, registration)

    assert list(uow.facts.rows) == [("anna", str(registration.event_id))]
    assert uow.inbox.seen[FACTS_GROUP] == {f"/identity#{registration.event_id}"}
