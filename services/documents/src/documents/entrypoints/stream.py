"""What the documents service consumes, as FastStream subscribers: identity's customer
events (verified e-mail addresses and cancellations, DOC-4/ID-9) and documents from
upstream systems (DOC-1). Each group commits its inbox rows with the effects; a document
that can never be stored is dead-lettered with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from contracts_schemas import topics
from contracts_schemas.base import Contract
from faststream.kafka import KafkaBroker
from servicekit.asyncapi import StreamSpec
from servicekit.stream import EventStream

from documents.handlers import Documents
from documents.unit_of_work import DocumentsUnitOfWork

U = TypeVar("U", bound=DocumentsUnitOfWork)

IDENTITY_GROUP = "documents.identity"
UPSTREAM_GROUP = "documents.upstream"
#: For the AsyncAPI document (`python -m servicekit.asyncapi_cli documents`).
STREAM = StreamSpec(
    "documents",
    consumes={
        IDENTITY_GROUP: (topics.IDENTITY_CUSTOMER,),
        UPSTREAM_GROUP: (topics.UPSTREAM_DOCUMENTS,),
    },
    publishes=(topics.DOCUMENTS_MAILBOX,),
)


def subscribe(stream: EventStream[U], documents: Documents) -> KafkaBroker:
    """Register the subscribers on `stream`; returns its broker."""

    @stream.subscriber(IDENTITY_GROUP, *STREAM.topics(IDENTITY_GROUP))
    async def identity_events(messages: Sequence[Contract], uow: U) -> None:
        """Verified e-mail addresses and cancellations (DOC-4, ID-9)."""
        await documents.record_identity(messages, uow)

    @stream.subscriber(UPSTREAM_GROUP, *STREAM.topics(UPSTREAM_GROUP))
    async def upstream_documents(messages: Sequence[Contract], uow: U) -> None:
        """Documents from output management and claims handling (DOC-1, DOC-4, DOC-5)."""
        await documents.deliver_from_stream(messages, uow)

    broker: KafkaBroker = stream.broker
    return broker
