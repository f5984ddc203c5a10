"""What the identity service consumes: contracts' policy events, into its own view
(ID-3 matching of policy numbers, ID-9 refusal while an investment contract is held), and
the moves customers report there (CT-4: the customer's address, AddressChanged)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts_schemas import topics
from contracts_schemas.base import Contract
from faststream.kafka import KafkaBroker
from servicekit.asyncapi import StreamSpec
from servicekit.stream import EventStream

from identity.adapters.postgres import PostgresIdentityUnitOfWork
from identity.handlers import Identity
from identity.unit_of_work import IdentityUnitOfWork

POLICIES_GROUP = "identity.policies"

#: What identity consumes and publishes, for its AsyncAPI document
#: (`python -m servicekit.asyncapi_cli identity`).
STREAM = StreamSpec(
    "identity",
    consumes={POLICIES_GROUP: (topics.CONTRACTS_POLICY,)},
    publishes=(topics.IDENTITY_CUSTOMER, topics.IDENTITY_CODES),
)


def subscribe(stream: EventStream[PostgresIdentityUnitOfWork], identity: Identity) -> KafkaBroker:
    @stream.subscriber(POLICIES_GROUP, *STREAM.topics(POLICIES_GROUP))
    async def policies(messages: Sequence[Contract], uow: IdentityUnitOfWork) -> None:
        """Policies issued, holders changed, policies cancelled: identity's own view;
        moves reported: the customer's address."""
        await identity.record_policies(messages, uow)

    broker: KafkaBroker = stream.broker
    return broker
