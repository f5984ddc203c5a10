"""The stream entrypoint on FastStream's in-memory test broker: CloudEvents published as
upstream systems and identity would reach the handlers through servicekit's inbox."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from contracts.adapters.memory import InMemoryContractsUnitOfWork
from contracts.adapters.mtan import NoMtanService
from contracts.config import ContractsSettings
from contracts.domain.catalogue import Catalogue
from contracts.entrypoints.stream import subscribe
from contracts.handlers import Contracts
from contracts_schemas import identity, topic_of
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from contracts_schemas.common import Carrier, ProductLine
from contracts_schemas.upstream import PolicyIssuedUpstream, PremiumPaidUpstream
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from servicekit.clock import FixedClock
from servicekit.memory import memory_transactions
from servicekit.stream import EventStream

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
DEAD_LETTERS = "portal.dlq.contracts.upstream-ingestion"


def issued(number: str, message_id: str) -> PolicyIssuedUpstream:
    return PolicyIssuedUpstream(
        message_id=message_id, source_system="policy-admin", occurred_at=NOW - timedelta(days=9),
        policy_number=number, product_line=ProductLine.LIABILITY,
        carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG, policyholder_ids=("anna",),
        start_date=date(2026, 1, 1), tariff="PHV", annual_premium_cents=8_900,
    )  # fmt: skip


def paid(number: str, message_id: str, payment_id: str = "pay-1") -> PremiumPaidUpstream:
    return PremiumPaidUpstream(
        message_id=message_id, source_system="collections", occurred_at=NOW - timedelta(days=1),
        policy_number=number, payment_id=payment_id, amount_cents=8_900,
    )  # fmt: skip


class ContractsStream:
    def __init__(self) -> None:
        self.uow = InMemoryContractsUnitOfWork()
        stream = EventStream(ContractsSettings(), memory_transactions(self.uow))
        contracts = Contracts(Catalogue.default(), NoMtanService(), FixedClock(NOW))
        self.broker: KafkaBroker = subscribe(stream, contracts)
        self.dead: list[tuple[str, dict[str, Any]]] = []

        @self.broker.subscriber(DEAD_LETTERS)
        async def dead_letters(message: KafkaMessage) -> None:
            self.dead.append((message.headers.get("x-dlq-reason", ""), dict(message.headers)))

    def types(self, policy_id: str) -> list[str]:
        streams: Any = self.uow.events
        return [type(e).__name__ for e in streams.streams.get(policy_id, [])]


async def send(broker: KafkaBroker, message: Contract, source: str) -> None:
    cloud_event = encode(message, source)
    await broker.publish(
        cloud_event.data, topic_of(message), key=(cloud_event.subject or "").encode(),
        headers=dict(cloud_event.header_pairs()),
    )  # fmt: skip


async def test_ct1_upstream_messages_on_kafka_are_recorded_once() -> None:
    running = ContractsStream()
    policy = issued("PHV-1", "m-1")
    async with TestKafkaBroker(running.broker) as broker:
        await send(broker, policy, "/policy-admin")
        await send(broker, policy, "/policy-admin")
        await send(broker, policy, "/replayed-by-operators")  # another envelope, same message
        await send(broker, paid("PHV-1", "m-2"), "/collections")
    assert running.types("PHV-1") == ["PolicyIssued", "PremiumPaid"]
    assert running.dead == []


async def test_ct1_a_payment_reusing_the_message_id_of_a_policy_is_recorded() -> None:
    """Issue 7 item 3: (source system, message id), as on HTTP."""
    running = ContractsStream()
    async with TestKafkaBroker(running.broker) as broker:
        await send(broker, issued("PHV-1", "M"), "/policy-admin")
        await send(broker, paid("PHV-1", "M"), "/collections")
    assert running.types("PHV-1") == ["PolicyIssued", "PremiumPaid"]


async def test_ct1_a_reused_message_id_is_dead_lettered_and_the_messages_behind_it_apply() -> None:
    """Issue 7 item 4: dead-lettered with its reason, never a stopped consumer."""
    running = ContractsStream()
    async with TestKafkaBroker(running.broker) as broker:
        await send(broker, issued("P1", "i-1"), "/policy-admin")
        await send(broker, issued("P2", "i-2"), "/policy-admin")
        await send(broker, paid("P1", "M"), "/collections")
        await send(broker, paid("P2", "M", payment_id="pay-2"), "/collections")
        await send(broker, paid("P2", "m-3", payment_id="pay-3"), "/collections")
    assert running.types("P1") == ["PolicyIssued", "PremiumPaid"]
    assert running.types("P2") == ["PolicyIssued", "PremiumPaid"]
    assert [reason for reason, _ in running.dead] == [
        "message_id_reused: message id already used for a different message: collections "
        "sent 'M' before with another content"
    ]


async def test_ct1_an_event_that_is_no_upstream_message_is_dead_lettered() -> None:
    running = ContractsStream()
    stray = identity.AccountActivated(
        event_id=uuid.uuid4(), aggregate_id="anna", aggregate_version=2, occurred_at=NOW,
        customer_ids=("anna",), customer_id="anna",
    )  # fmt: skip
    cloud_event = encode(stray, "/identity")
    async with TestKafkaBroker(running.broker) as broker:
        await broker.publish(
            cloud_event.data, "upstream.contracts.v1", headers=dict(cloud_event.header_pairs())
        )
    assert len(running.dead) == 1
    assert "is not an upstream contracts message" in running.dead[0][0]


async def test_id3_activations_from_identity_are_recorded_and_other_events_ignored() -> None:
    running = ContractsStream()
    activated = identity.AccountActivated(
        event_id=uuid.uuid4(), aggregate_id="anna", aggregate_version=2, occurred_at=NOW,
        customer_ids=("anna",), customer_id="anna",
    )  # fmt: skip
    cancelled = identity.AccountCancelled(
        event_id=uuid.uuid4(), aggregate_id="ben", aggregate_version=3, occurred_at=NOW,
        customer_ids=("ben",), customer_id="ben",
    )  # fmt: skip
    async with TestKafkaBroker(running.broker) as broker:
        await send(broker, activated, "/identity")
        await send(broker, cancelled, "/identity")
    assert await running.uow.activations.is_activated("anna")
    assert not await running.uow.activations.is_activated("ben")
