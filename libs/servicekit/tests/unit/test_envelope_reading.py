"""What the consumer reads from a record's headers (once per event, on the fast path):
the CloudEvents attributes, the trace context, the extensions; and what it refuses - a
header that is not UTF-8, whatever its name, goes to the dead letters with its reason."""

from __future__ import annotations

import pytest
from contracts_schemas.cloudevents import InvalidMessage, decode, encode, from_kafka
from kit_factories import premium_paid

TRACEPARENT = f"00-{'a' * 32}-{'b' * 16}-01"


def test_the_envelope_of_an_encoded_event_reads_back_whole() -> None:
    event = premium_paid("pol-1", 1)
    sent = encode(event, "/contracts", TRACEPARENT)
    received = from_kafka(sent.headers(), sent.data)
    assert received == sent
    assert received.extensions == {}
    assert decode(received) == event


def test_extensions_are_read_and_the_reserved_attributes_are_not_among_them() -> None:
    sent = encode(premium_paid("pol-1", 1), "/contracts")
    headers = [*sent.headers(), ("ce_partitionkey", b"pol-1"), ("x-other", b"kept out")]
    received = from_kafka(headers, sent.data)
    assert received.extensions == {"partitionkey": "pol-1"}
    assert (received.id, received.type, received.subject) == (sent.id, sent.type, sent.subject)
    assert received.headers() == headers[:-1]


@pytest.mark.parametrize("name", ["ce_id", "x-other", "traceparent"])
def test_a_header_that_is_not_utf8_is_refused_whatever_its_name(name: str) -> None:
    sent = encode(premium_paid("pol-1", 1), "/contracts")
    headers = [*sent.headers(), (name, b"\xff\xfe")]
    with pytest.raises(InvalidMessage, match=f"header {name} is not UTF-8"):
        from_kafka(headers, sent.data)


def test_a_header_without_a_value_reads_as_empty_text() -> None:
    sent = encode(premium_paid("pol-1", 1), "/contracts")
    headers: list[tuple[str, bytes | None]] = [*sent.headers(), ("ce_note", None)]
    assert from_kafka(headers, sent.data).extensions == {"note": ""}  # type: ignore[arg-type]
