"""EventStream on FastStream's in-memory `TestKafkaBroker`, and its parts without a broker.

`TestKafkaBroker` drives the MANUAL-ack batch subscriber with its custom parser and
decoder: each `publish` arrives as a batch of one record. Its `publish_batch` gives
every record of a batch the same headers, and a CloudEvent's id lives in the headers,
so a batch of distinct CloudEvents is handed to the subscriber the way the test broker
itself hands over batches: records built by its `build_message`, to `process_message`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from contracts_schemas.contracts import PremiumPaid
from faststream.kafka import KafkaMessage, TestKafkaBroker
from faststream.kafka.testing import build_message
from kit_factories import conflicting_once_at_commit, premium_paid, records_at
from servicekit.kafka import OutgoingRecord
from servicekit.memory import InMemoryUnitOfWork, memory_transactions
from servicekit.settings import ServiceSettings
from servicekit.stream import (
    DEAD_LETTER_MAX_BODY,
    DeadLetter,
    EventStream,
    Rejected,
    dead_letter_record,
)

TOPIC = "portal.contracts.policy.v1"
GROUP = "loyalty"
DEAD_LETTERS = "portal.dlq.loyalty"


class Applied:
    """A handler that keeps what it applied in the unit of work's published messages."""

    def __init__(self, refuse_policy: str | None = None) -> None:
        self.batches: list[list[Contract]] = []
        self.refuse_policy = refuse_policy

    async def __call__(self, messages: Sequence[Contract], uow: InMemoryUnitOfWork) -> None:
        for message in messages:
            if isinstance(message, PremiumPaid) and message.policy_id == self.refuse_policy:
                raise Rejected(f"policy {message.policy_id} is closed")
        self.batches.append(list(messages))
        await uow.events.enqueue(messages)


def stream_with(handler: Applied) -> tuple[EventStream[InMemoryUnitOfWork], InMemoryUnitOfWork]:
    uow = InMemoryUnitOfWork()
    settings = ServiceSettings(service_name="loyalty", instance_id="unit")
    stream = EventStream(settings, memory_transactions(uow))
    stream.subscriber(GROUP, TOPIC)(handler)
    return stream, uow


def text_headers(message: PremiumPaid) -> dict[str, str]:
    return {k: v.decode() for k, v in encode(message, "/contracts").headers()}


async def record_of(message: PremiumPaid, offset: int) -> ConsumerRecord[bytes, bytes]:
    record = await build_message(
        encode(message, "/contracts").data,
        TOPIC,
        key=message.policy_id.encode(),
        headers=text_headers(message),
        serializer=None,
    )
    record.offset = offset
    return record


def inbox_subscriber(stream: EventStream[InMemoryUnitOfWork]) -> Any:
    """FastStream's subscriber of the inbox consumer (group `GROUP`)."""
    (subscriber,) = (s for s in stream.broker.subscribers if getattr(s, "group_id", None) == GROUP)
    return subscriber


def dead_letters_of(stream: EventStream[InMemoryUnitOfWork]) -> list[dict[str, str]]:
    """Subscribes to the dead-letter topic; returns the headers of what arrives there."""
    arrived: list[dict[str, str]] = []

    @stream.broker.subscriber(DEAD_LETTERS)
    async def capture(message: KafkaMessage) -> None:
        arrived.append(dict(message.headers))

    return arrived


async def test_a_published_cloudevent_is_applied_and_remembered_by_source_and_id() -> None:
    handler = Applied()
    stream, uow = stream_with(handler)
    paid = premium_paid("pol-1", 1)
    async with TestKafkaBroker(stream.broker) as broker:
        data = encode(paid, "/contracts").data
        await broker.publish(data, TOPIC, key=b"pol-1", headers=text_headers(paid))

    assert handler.batches == [[paid]]
    assert uow.events.published == [paid]
    assert uow.inbox.seen == {GROUP: {f"/contracts#{paid.event_id}"}}


async def test_a_batch_of_cloudevents_is_applied_once_each_in_one_handler_call() -> None:
    handler = Applied()
    stream, _ = stream_with(handler)
    first, second = premium_paid("pol-1", 1), premium_paid("pol-1", 2)
    async with TestKafkaBroker(stream.broker):
        records = [await record_of(m, n) for n, m in enumerate((first, second, first))]
        await inbox_subscriber(stream).process_message(records)

    assert handler.batches == [[first, second]], "the repeated event is absorbed by the inbox"
    assert (stream.consumers[0].applied, stream.consumers[0].duplicates) == (2, 1)


async def test_a_batch_whose_commit_conflicts_is_applied_again_and_counted_once() -> None:
    handler = Applied()
    uow = InMemoryUnitOfWork()
    settings = ServiceSettings(service_name="loyalty", instance_id="unit")
    stream = EventStream(settings, conflicting_once_at_commit(uow))
    stream.subscriber(GROUP, TOPIC)(handler)
    paid = premium_paid("pol-1", 1)
    async with TestKafkaBroker(stream.broker) as broker:
        data = encode(paid, "/contracts").data
        await broker.publish(data, TOPIC, key=b"pol-1", headers=text_headers(paid))

    assert handler.batches == [[paid], [paid]], "the handler decided again on fresh state"
    assert uow.events.published == [paid]
    assert (stream.consumers[0].applied, stream.consumers[0].duplicates) == (1, 0)


async def test_an_event_seen_before_is_not_applied_again() -> None:
    handler = Applied()
    stream, _ = stream_with(handler)
    paid = premium_paid("pol-1", 1)
    async with TestKafkaBroker(stream.broker) as broker:
        data = encode(paid, "/contracts").data
        for _ in range(2):
            await broker.publish(data, TOPIC, key=b"pol-1", headers=text_headers(paid))

    assert handler.batches == [[paid]]
    assert stream.consumers[0].duplicates == 1


async def test_without_the_inbox_every_delivery_reaches_the_handler_repeats_included() -> None:
    """For a handler whose own state decides "the same message" (contracts' intake)."""
    handler = Applied()
    uow = InMemoryUnitOfWork()
    stream = EventStream(ServiceSettings(service_name="contracts"), memory_transactions(uow))
    stream.subscriber(GROUP, TOPIC, inbox=False)(handler)
    paid = premium_paid("pol-1", 1)
    async with TestKafkaBroker(stream.broker) as broker:
        data = encode(paid, "/contracts").data
        for _ in range(2):
            await broker.publish(data, TOPIC, key=b"pol-1", headers=text_headers(paid))

    assert handler.batches == [[paid], [paid]]
    assert uow.inbox.seen == {}


def test_a_group_gets_as_many_members_in_the_process_as_configured_each_with_its_consumer() -> None:
    settings = ServiceSettings(service_name="loyalty", instance_id="unit")
    stream = EventStream(
        settings.model_copy(update={"kafka_consumers_per_group": 3}),
        memory_transactions(InMemoryUnitOfWork()),
    )
    stream.subscriber(GROUP, TOPIC)(Applied())

    members = [s for s in stream.broker.subscribers if getattr(s, "group_id", None) == GROUP]
    assert len(members) == 3
    assert [c.name for c in stream.consumers] == [GROUP] * 3
    assert len({id(c) for c in stream.consumers}) == 3, "each its own inbox consumer"


async def test_a_rejected_message_is_dead_lettered_with_its_reason_and_never_remembered() -> None:
    handler = Applied(refuse_policy="pol-closed")
    stream, uow = stream_with(handler)
    dead = dead_letters_of(stream)
    kept, refused = premium_paid("pol-1", 1), premium_paid("pol-closed", 1)
    async with TestKafkaBroker(stream.broker):
        records = [await record_of(kept, 0), await record_of(refused, 1)]
        await inbox_subscriber(stream).process_message(records)

    assert handler.batches == [[kept]]
    assert [(d["x-dlq-reason"], d["ce_id"]) for d in dead] == [
        ("policy pol-closed is closed", str(refused.event_id))
    ]
    assert uow.inbox.seen[GROUP] == {f"/contracts#{kept.event_id}"}, "replayable"


async def test_an_undecodable_message_is_dead_lettered_with_its_reason() -> None:
    stream, uow = stream_with(Applied())
    dead = dead_letters_of(stream)
    async with TestKafkaBroker(stream.broker) as broker:
        await broker.publish(b"{not json", TOPIC, key=b"pol-1")

    assert [d["x-dlq-original-topic"] for d in dead] == [TOPIC]
    assert "specversion" in dead[0]["x-dlq-reason"]
    assert dead[0]["x-dlq-consumer"] == GROUP
    assert uow.events.published == []


async def test_publishing_before_the_broker_is_connected_is_a_kafka_error_the_relay_retries() -> (
    None
):
    stream, _ = stream_with(Applied())
    with pytest.raises(KafkaError):
        await stream.publish([OutgoingRecord("t", "k", b"v", [])])


def test_a_dead_letter_keeps_the_record_and_says_why_where_and_when() -> None:
    (record,) = records_at(("upstream", 2, 41))
    record.key = b"pol-1"
    record.value = b"body"
    record.headers = [("ce_id", b"id-1"), ("x-dlq-reason", b"an earlier one"), ("empty", None)]  # type: ignore[list-item]

    letter = dead_letter_record("portal.dlq.g", "g", DeadLetter(record, "schema violation"))

    headers = dict(letter.headers)
    assert (letter.topic, letter.key, letter.value) == ("portal.dlq.g", "pol-1", b"body")
    assert headers["ce_id"] == b"id-1"
    assert headers["empty"] == b""
    assert headers["x-dlq-reason"] == b"schema violation"
    assert [v for k, v in letter.headers if k == "x-dlq-reason"] == [b"schema violation"]
    assert headers["x-dlq-consumer"] == b"g"
    assert headers["x-dlq-original-topic"] == b"upstream"
    assert headers["x-dlq-original-partition"] == b"2"
    assert headers["x-dlq-original-offset"] == b"41"
    assert b"T" in headers["x-dlq-at"]
    assert "x-dlq-body-omitted" not in headers


@pytest.mark.parametrize(
    ("size", "omitted"), [(DEAD_LETTER_MAX_BODY, False), (DEAD_LETTER_MAX_BODY + 1, True)]
)
def test_a_body_too_large_to_dead_letter_is_replaced_by_its_size_and_digest(
    size: int, omitted: bool
) -> None:
    (record,) = records_at(("upstream", 0, 0))
    record.value = b"x" * size
    letter = dead_letter_record("dlq", "g", DeadLetter(record, "undecodable"))
    headers: dict[str, Any] = dict(letter.headers)
    if omitted:
        assert letter.value == b""
        assert headers["x-dlq-body-omitted"].startswith(f"{size} bytes, sha256 ".encode())
    else:
        assert letter.value == record.value
        assert "x-dlq-body-omitted" not in headers
