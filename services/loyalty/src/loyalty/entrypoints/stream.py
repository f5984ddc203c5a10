"""What the loyalty service consumes: its FastStream subscriber (consumer group
`loyalty.facts`), with servicekit's inbox, dead letters and commit-after-effect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from contracts_schemas import topics
from contracts_schemas.base import Contract
from faststream.kafka import KafkaBroker
from servicekit.asyncapi import StreamSpec
from servicekit.stream import EventStream

from loyalty.handlers import Loyalty
from loyalty.unit_of_work import LoyaltyUnitOfWork

U = TypeVar("U", bound=LoyaltyUnitOfWork)

FACTS_GROUP = "loyalty.facts"
INPUT_TOPICS = (
    topics.CONTRACTS_POLICY,
    topics.IDENTITY_CUSTOMER,
    topics.DOCUMENTS_MAILBOX,
    topics.CLAIMS_CLAIM,
    topics.LOYALTY_ACCOUNT,  # its own decisions: a replay from the topics restores them
)

#: What loyalty consumes and publishes, for its AsyncAPI document
#: (`python -m servicekit.asyncapi_cli loyalty`).
STREAM = StreamSpec(
    "loyalty", consumes={FACTS_GROUP: INPUT_TOPICS}, publishes=(topics.LOYALTY_ACCOUNT,)
)


def subscribe(stream: EventStream[U], loyalty: Loyalty) -> KafkaBroker:
    """Register the subscribers on `stream`; returns its broker (for FastStream's test
    broker, or to start it)."""

    @stream.subscriber(FACTS_GROUP, *STREAM.topics(FACTS_GROUP))
    async def record_facts(messages: Sequence[Contract], uow: U) -> None:
        """Policies, payments, registrations, cancellations, mailbox settings, claims and
        loyalty's own decisions: each fact once per customer it concerns (LOY-12)."""
        await loyalty.record_facts(messages, uow)

    return stream.broker
