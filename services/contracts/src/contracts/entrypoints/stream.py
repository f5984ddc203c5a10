"""The stream side of contracts: what it consumes, as FastStream subscribers.

- `contracts.upstream-ingestion` on `upstream.contracts.v1`: upstream systems' messages
  (CT-1). A message a rule refuses, or whose message id its system used before for a
  different message, goes to `<prefix>portal.dlq.contracts.upstream-ingestion` with the
  reason; the messages behind it are recorded.
- `contracts.identity` on `portal.identity.customer.v1`: AccountActivated (ID-3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from contracts_schemas import identity, topics
from contracts_schemas.base import Contract
from faststream.kafka import KafkaBroker
from servicekit.asyncapi import StreamSpec
from servicekit.stream import EventStream, Rejected

from contracts.domain.errors import UpstreamRejected
from contracts.handlers import UPSTREAM_TYPES, Contracts, UpstreamInput
from contracts.unit_of_work import ContractsUnitOfWork

INGESTION_GROUP = "contracts.upstream-ingestion"
IDENTITY_GROUP = "contracts.identity"

U = TypeVar("U", bound=ContractsUnitOfWork)

#: What contracts consumes and publishes, for its AsyncAPI document
#: (`python -m servicekit.asyncapi_cli contracts`).
STREAM = StreamSpec(
    "contracts",
    consumes={
        INGESTION_GROUP: (topics.UPSTREAM_CONTRACTS,),
        IDENTITY_GROUP: (topics.IDENTITY_CUSTOMER,),
    },
    publishes=(topics.CONTRACTS_POLICY,),
)


def subscribe(stream: EventStream[U], contracts: Contracts) -> KafkaBroker:
    """Declare the subscribers on the service's stream; returns its broker."""

    @stream.subscriber(INGESTION_GROUP, *STREAM.topics(INGESTION_GROUP), inbox=False)
    async def upstream_intake(messages: Sequence[Contract], uow: U) -> None:
        """CT-1: policies and payments from policy administration and collections."""
        upstream: list[UpstreamInput] = []
        for message in messages:
            if not isinstance(message, UPSTREAM_TYPES):
                raise Rejected(f"{message.type_name()} is not an upstream contracts message")
            upstream.append(message)
        try:
            await contracts.ingest_many(upstream, uow)
        except UpstreamRejected as rejected:
            raise Rejected(f"{rejected.code.value}: {rejected.detail}") from rejected

    @stream.subscriber(IDENTITY_GROUP, *STREAM.topics(IDENTITY_GROUP))
    async def account_activations(messages: Sequence[Contract], uow: U) -> None:
        """ID-3: who entered their activation code (other identity events are ignored)."""
        activated = [m for m in messages if isinstance(m, identity.AccountActivated)]
        if activated:
            await contracts.record_activations(activated, uow)

    return stream.broker
