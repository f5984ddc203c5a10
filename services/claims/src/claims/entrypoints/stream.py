"""What the claims service consumes: contracts' policy events into its own view of the
contracts customers may claim on (CT-3), and the claims-handling system's commands (CL-4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from contracts_schemas import topics
from contracts_schemas.base import Contract
from faststream.kafka import KafkaBroker
from servicekit.asyncapi import StreamSpec
from servicekit.stream import EventStream

from claims.handlers import ClaimsHandlers
from claims.unit_of_work import ClaimsUnitOfWork

POLICIES_GROUP = "claims.policies"
HANDLING_GROUP = "claims.handling"

U = TypeVar("U", bound=ClaimsUnitOfWork)

#: What claims consumes and publishes, for its AsyncAPI document
#: (`python -m servicekit.asyncapi_cli claims`).
STREAM = StreamSpec(
    "claims",
    consumes={
        POLICIES_GROUP: (topics.CONTRACTS_POLICY,),
        HANDLING_GROUP: (topics.UPSTREAM_CLAIMS,),
    },
    publishes=(topics.CLAIMS_CLAIM,),
)


def subscribe(stream: EventStream[U], handlers: ClaimsHandlers) -> KafkaBroker:
    @stream.subscriber(POLICIES_GROUP, *STREAM.topics(POLICIES_GROUP))
    async def policies(messages: Sequence[Contract], uow: U) -> None:
        """Policies issued, holders changed, policies cancelled: the claims service's view."""
        await handlers.record_policies(messages, uow)

    @stream.subscriber(HANDLING_GROUP, *STREAM.topics(HANDLING_GROUP))
    async def handling(messages: Sequence[Contract], uow: U) -> None:
        """Claims handling moves claims (CL-4); a command that cannot apply is dead-lettered
        with the reason."""
        await handlers.move_from_stream(messages, uow)

    broker: KafkaBroker = stream.broker
    return broker
