"""The stream entrypoint on FastStream's in-memory test broker: CloudEvents published to
the notifier's topics reach the intake through servicekit's inbox subscriber (unit test;
the real broker is in tests/integration)."""

from __future__ import annotations

from contracts_schemas import topic_of
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from faststream.kafka import TestKafkaBroker
from notifier.config import NotifierSettings
from notifier.domain.delivery import DeliveryStatus
from notifier.domain.messages import MessageKind
from notifier.entrypoints.stream import GROUP, TOPICS, subscribe
from notifier_handlers import Handlers, handlers
from servicekit.stream import EventStream

PREFIX = "unit."


def stream_of(h: Handlers) -> EventStream:  # type: ignore[type-arg]
    settings = NotifierSettings(topic_prefix=PREFIX, instance_id="unit-1")
    stream = EventStream(settings, h.transactions)
    subscribe(stream, h.intake)
    return stream


async def publish(broker: TestKafkaBroker, *messages: Contract, source: str = "/identity") -> None:
    for message in messages:
        cloud_event = encode(message, source)
        await broker.publish(
            cloud_event.data,
            topic=PREFIX + topic_of(message),
            key=(cloud_event.subject or cloud_event.id).encode(),
            headers={name: value.decode() for name, value in cloud_event.headers()},
        )


def test_nt2_the_subscriber_is_group_notifier_events_on_the_five_input_topics(ev):
    stream = stream_of(handlers(ev.now))

    (consumer,) = stream.consumers
    assert consumer.name == PREFIX + GROUP
    assert len(TOPICS) == 5


async def test_nt2_nt4_events_on_the_topics_become_one_queued_email_however_often_sent(ev):
    h = handlers(ev.now)
    stream = stream_of(h)
    changed = ev.claim_status()

    async with TestKafkaBroker(stream.broker) as broker:
        await publish(broker, ev.registration)
        await publish(broker, changed, changed, source="/claims")

    (record,) = await h.deliveries()
    assert record.kind is MessageKind.CLAIM_STATUS_CHANGED
    assert record.delivery.status is DeliveryStatus.QUEUED
    (consumer,) = stream.consumers
    assert (consumer.applied, consumer.duplicates) == (2, 1)


async def test_nt3_the_same_id_from_another_source_is_another_event(ev):
    """The inbox keys by CloudEvents source + id: it is applied, and the message key still
    makes the second enqueue a no-op (NT-4)."""
    h = handlers(ev.now)
    stream = stream_of(h)
    changed = ev.claim_status()

    async with TestKafkaBroker(stream.broker) as broker:
        await publish(broker, ev.registration, changed)
        await publish(broker, changed, source="/claims-replay")

    (consumer,) = stream.consumers
    assert consumer.applied == 3
    assert len(await h.deliveries()) == 1


async def test_id1_id4_doc4_the_new_identity_and_documents_events_arrive_through_the_subscriber(
    ev,
):
    """Issue 9/10 events on their topics (codes, customer, mailbox), one message each."""
    from contracts_schemas.documents import DocumentDelivery

    h = handlers(ev.now)
    stream = stream_of(h)
    answer = ev.registration_not_completed()

    async with TestKafkaBroker(stream.broker) as broker:
        await publish(broker, ev.registration, ev.verification, ev.email_code(), answer)
        await publish(broker, ev.locked(), ev.locked())
        await publish(broker, ev.document(delivery=DocumentDelivery.POST), source="/documents")

    kinds = sorted(r.kind.value for r in await h.deliveries())
    assert kinds == [
        "document_letter",
        "email_verification_code",
        "registration_not_completed",
        "security_notice",
        "security_notice",
    ]
    (consumer,) = stream.consumers
    assert consumer.duplicates == 0
