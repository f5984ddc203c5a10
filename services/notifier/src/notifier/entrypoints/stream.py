"""The notifier's stream side: what it consumes, as FastStream subscribers.

One consumer group reads the events of identity, claims, documents and loyalty into the
intake (servicekit's inbox subscriber: the inbox rows and the intake's effects commit in
one transaction, then the offsets; undecodable messages go to `portal.dlq.notifier.events`
with the reason).
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts_schemas import topics
from contracts_schemas.base import Contract
from faststream.kafka import KafkaBroker
from servicekit.asyncapi import StreamSpec
from servicekit.stream import EventStream

from notifier.handlers.intake import Intake
from notifier.unit_of_work import NotifierUnitOfWork

GROUP = "notifier.events"
TOPICS = (
    topics.IDENTITY_CUSTOMER,
    topics.IDENTITY_CODES,
    topics.CLAIMS_CLAIM,
    topics.DOCUMENTS_MAILBOX,
    topics.LOYALTY_ACCOUNT,
)
#: What the notifier consumes and publishes (nothing), for its AsyncAPI document
#: (`python -m servicekit.asyncapi_cli notifier`).
STREAM = StreamSpec("notifier", consumes={GROUP: TOPICS})


def subscribe(stream: EventStream[NotifierUnitOfWork], intake: Intake) -> KafkaBroker:
    """Register the notifier's subscribers on `stream`; returns its broker (AsyncAPI)."""

    @stream.subscriber(GROUP, *STREAM.topics(GROUP))
    async def notifier_events(messages: Sequence[Contract], uow: NotifierUnitOfWork) -> None:
        """Contact data and preferences (NT-3) and the events that trigger e-mails, SMS and
        letters (NT-2), stored as messages for the delivery worker (NT-4)."""
        await intake.handle(messages, uow)

    return stream.broker
