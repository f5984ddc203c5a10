"""CloudEvents 1.0, Kafka binary content mode: what goes on the wire and what is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from contracts_schemas import partition_key, topic_of
from contracts_schemas.cloudevents import InvalidMessage, decode, encode, from_kafka
from contracts_schemas.common import ProductLine
from contracts_schemas.contracts import PremiumPaid


def paid() -> PremiumPaid:
    return PremiumPaid(
        event_id=uuid.uuid4(), aggregate_id="HR-1", aggregate_version=3,
        occurred_at=datetime(2026, 3, 31, 21, 59, tzinfo=UTC), customer_ids=("c-1", "c-2"),
        policy_id="HR-1", payment_id="p-1", product_line=ProductLine.MOTOR, point_relevant=True,
        amount_cents=12_050, policyholder_ids=("c-1", "c-2"),
    )  # fmt: skip


def test_an_event_round_trips_through_headers_and_body() -> None:
    event = paid()
    cloud_event = encode(event, "/contracts", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    headers = dict(cloud_event.headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"de.portal.contracts.PremiumPaid.v1"
    assert headers["ce_subject"] == b"HR-1"
    assert headers["content-type"] == b"application/json"
    assert headers["traceparent"].startswith(b"00-")
    received = from_kafka(cloud_event.headers(), cloud_event.data)
    assert decode(received) == event
    assert received.traceparent == cloud_event.traceparent


def test_events_are_keyed_by_aggregate_on_their_aggregate_topic() -> None:
    assert topic_of(paid()) == "portal.contracts.policy.v1"
    assert partition_key(paid()) == "HR-1"


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ([], b"{}", "ce_specversion must be 1.0"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"x")], b"{}", "missing CloudEvents attributes"),
        (
            [("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"/s"),
             ("ce_type", b"de.portal.contracts.Nope.v1")],
            b"{}", "unknown event type",
        ),
        (
            [("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"/s"),
             ("ce_type", b"de.portal.contracts.PremiumPaid.v1")],
            b'{"amount_cents": -5}', "schema violation",
        ),
    ],
    ids=["not-a-cloudevent", "incomplete", "unknown-type", "schema-violation"],
)  # fmt: skip
def test_messages_that_can_never_be_processed_are_refused_with_a_reason(
    headers: list[tuple[str, bytes]], body: bytes, reason: str
) -> None:
    with pytest.raises(InvalidMessage) as refused:
        decode(from_kafka(headers, body))
    assert reason in refused.value.reason


def test_an_envelope_whose_id_differs_from_the_body_is_refused() -> None:
    cloud_event = encode(paid(), "/contracts")
    forged = [(k, b"other-id" if k == "ce_id" else v) for k, v in cloud_event.headers()]
    with pytest.raises(InvalidMessage, match="differs"):
        decode(from_kafka(forged, cloud_event.data))
