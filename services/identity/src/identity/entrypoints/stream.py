"""What the identity service consumes: contracts' policy events, into its own view
(ID-3 matching of policy numbers, ID-9 refusal while an investment contract is held)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts_schemas import topics
from contracts_schemas.base import Contract
from faststream.kafka import KafkaBroker
from servicekit.stream import EventStream

from identity.adapters.postgres import PostgresIdentityUnitOfWork
from identity.handlers import Identity
from identity.unit_of_work import IdentityUnitOfWork

POLICIES_GROUP = "identity.policies"


def subscribe(stream: EventStream[PostgresIdentityUnitOfWork], identity: Identity) -> KafkaBroker:
    @stream.subscriber(POLICIES_GROUP, topics.CONTRACTS_POLICY)
    async def policies(messages: Sequence[Contract], uow: IdentityUnitOfWork) -> None:
        """Policies issued, holders changed, policies cancelled: identity's own view."""
        await identity.record_policies(messages, uow)

    broker: KafkaBroker = stream.broker
    return broker
