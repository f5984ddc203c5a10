"""LOY-12 / OPS-3: a replay folds exactly the messages the live consumer applies.

The rebuild reads the topics itself and decodes only the types that can contribute
facts; what it folds must be what the live consumer (servicekit's `decode_records`, which
dead-letters the rest) hands to `record_facts`, less the messages that contribute nothing.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime

from aiokafka import ConsumerRecord
from contracts_schemas import loyalty as events
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from loyalty.entrypoints.rebuild import folded_messages
from loyalty.translation import facts_from
from loyalty_harness import (
    cancelled_account,
    email_instead_of_letter,
    policy_issued,
    premium_paid,
    registered,
)
from servicekit.clock import BERLIN
from servicekit.kafka import Record
from servicekit.stream import decode_records

AT = datetime(2026, 3, 1, 9, 30, tzinfo=BERLIN)
Headers = list[tuple[str, bytes]]


def record(offset: int, headers: Headers, value: bytes | None) -> Record:
    return ConsumerRecord("t", 0, offset, 0, 0, None, value, 0, 0, 0, headers)


def as_record(offset: int, message: Contract) -> Record:
    cloud_event = encode(message, "/test")
    return record(offset, cloud_event.headers(), cloud_event.data)


def points_credited() -> events.PointsCredited:
    return events.PointsCredited(
        event_id=uuid.uuid4(), aggregate_id="account-c1", aggregate_version=1, occurred_at=AT,
        customer_ids=("c1",), customer_id="c1", lot_id="lot-1", points=30, rule="premium",
        credited_on=date(2026, 3, 1), expires_on=date(2029, 12, 31),
    )  # fmt: skip


def broken(message: Contract, change: dict[str, object]) -> tuple[Headers, bytes]:
    """The message's record with its body changed (no longer valid against its schema)."""
    cloud_event = encode(message, "/test")
    body = json.loads(cloud_event.data) | change
    return cloud_event.headers(), json.dumps(body).encode()


def test_loy12_a_replay_folds_exactly_the_messages_the_live_consumer_applies() -> None:
    paid = premium_paid("KFZ-1", ("anna", "ben"), 9_999, AT, 2)
    valid = [
        registered("anna", AT),
        policy_issued("KFZ-1", ("anna", "ben"), date(2026, 1, 1), AT),
        paid,
        email_instead_of_letter("anna", AT),
        points_credited(),  # loyalty's own announcement: valid, contributes nothing
        cancelled_account("ben", AT),
    ]
    records = [as_record(n, message) for n, message in enumerate(valid)]
    no_amount_headers, no_amount = broken(paid, {"amount_cents": 0})
    other_id_headers, other_id = broken(paid, {"event_id": str(uuid.uuid4())})
    not_utf8 = [*encode(paid, "/test").headers(), ("x-note", b"\xff\xfe")]
    credit_headers, credit_garbage = broken(points_credited(), {"points": "many"})
    records += [
        record(10, no_amount_headers, no_amount),  # schema violation
        record(11, other_id_headers, other_id),  # ce_id differs from the body's id
        record(12, not_utf8, encode(paid, "/test").data),  # a header that is not UTF-8
        record(13, encode(paid, "/test").headers(), None),  # no body
        record(14, [h for h in not_utf8 if h[0] != "ce_specversion"], b"{}"),
        record(15, credit_headers, credit_garbage),  # invalid, and contributes nothing
        record(16, [("ce_type", b"de.portal.unknown.Thing.v1")], b"not json"),
        record(17, [], b"no envelope at all"),
    ]

    deliveries, dead = decode_records(records)
    applied_live = [d.message for d in deliveries if facts_from(d.message)]

    assert folded_messages(records) == applied_live
    assert len(applied_live) == 5  # the valid ones but the announcement
    assert {r.offset for r in (d.record for d in dead)} >= {10, 11, 12, 13, 14, 15, 16, 17}
