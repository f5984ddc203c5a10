"""OPS-2: one customer request through the gateway is one trace across every service it
reaches - the services it calls over HTTP, the events they record on Kafka, the consumers
that apply them and what THOSE record in turn. Real processes (gateway, identity,
contracts, loyalty, notifier with its SMS stand-in and print queue), the real broker and
database; spans read from the file every process appends to (PORTAL_TRACE_FILE).

The request under test: the customer reports a move through the gateway (CT-4). Contracts
records `MoveReported` on Kafka; loyalty's consumer applies it, and so does identity's,
which records `AddressChanged` (identity owns the address) through its outbox - the
`traceparent` its consumer continued goes with it - and the notifier's consumer applies
that and plans the confirmation letter to the old address (NT-2), which the print queue
then holds. One trace: gateway -> contracts -> Kafka -> loyalty AND identity -> Kafka ->
notifier.

Also kept: the mTAN request (CT-4/ID-6), the trace's hop over HTTP - contracts asks
identity for the mTAN with its traced client (`servicekit.tracing.traced_client`), and
identity's span continues contracts'; identity's `MtanRequested` reaches the notifier's
consumer (the SMS) in the same trace."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from e2e_factories import PASSWORD
from e2e_harness import (
    Platform,
    answer,
    enable_two_factor,
    eventually,
    log_in_with_sms,
    next_sms_code,
    onboard,
    running_platform,
    sms_codes,
)
from servicekit import testing
from servicekit.kafka import reliable_producer
from servicekit.testing import required_env, unique

pytestmark = pytest.mark.e2e

#: The gateway needs every upstream it routes to (claims and documents take no part here).
SERVICES = ("identity", "contracts", "loyalty", "notifier", "claims", "documents", "gateway")
IBAN = "DE02120300000000202051"
#: Where the customer moves (from the Heidestraße 17, Köln, of the e2e factories).
NEW_ADDRESS = {"street": "Lindenallee 5", "postal_code": "10115", "city": "Berlin"}


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Platform, Path]]:
    """The platform's processes, each exporting its spans to one shared file."""
    required_env("PORTAL_DATABASE_URL")
    trace_file = tmp_path / "traces.jsonl"
    monkeypatch.setenv("PORTAL_TRACE_FILE", str(trace_file))
    monkeypatch.setenv("PORTAL_TRACE_EXPORT_DELAY_MS", "200")
    with running_platform(SERVICES, prefix=unique("trace") + ".") as platform:
        yield platform, trace_file


def spans_of(trace_file: Path, trace_id: str) -> list[dict[str, Any]]:
    if not trace_file.exists():
        return []
    spans = (json.loads(line) for line in trace_file.read_text().splitlines() if line)
    return [s for s in spans if s["trace_id"] == trace_id]


def consumed_in(spans: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    """The service's consumer spans in the trace: its handler run on the trace's events."""
    return [
        s for s in spans
        if s["service"] == service and s["kind"] == "CONSUMER" and s["name"].startswith("process")
    ]  # fmt: skip


def served_by(spans: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["service"] == service and s["kind"] == "SERVER"]


def reached(trace_file: Path, trace_id: str, servers: set[str], consumers: set[str]) -> Any:
    """The trace's spans once each of `servers` served a span of it and each of
    `consumers` applied one of its events (exactly what the test then asserts)."""

    def check() -> list[dict[str, Any]] | None:
        spans = spans_of(trace_file, trace_id)
        complete = all(served_by(spans, s) for s in servers) and all(
            consumed_in(spans, c) for c in consumers
        )
        return spans if complete else None

    return check


def continued(trace_file: Path, trace_id: str, consumer: str, parent: str) -> Any:
    """The trace's spans once a consumer span of `consumer` is the child of a span of
    `parent` (exactly what the test then asserts)."""

    def check() -> list[dict[str, Any]] | None:
        spans = spans_of(trace_file, trace_id)
        parents = {s["span_id"] for s in spans if s["service"] == parent}
        children = [s for s in consumed_in(spans, consumer) if s["parent_span_id"] in parents]
        return spans if children else None

    return check


async def publish(prefix: str, source: str, *messages: Any) -> None:
    producer: AIOKafkaProducer = reliable_producer(
        required_env("PORTAL_KAFKA_BOOTSTRAP"), unique("trace-producer")
    )
    await producer.start()
    try:
        await testing.publish(producer, *messages, prefix=prefix, source=source)
    finally:
        await producer.stop()


def address_letters(platform: Platform, recipient: str) -> list[tuple[dict[str, Any], str]]:
    """The move's confirmation letters (NT-2) in the print queue addressed to `recipient`."""
    return [(m, text) for m, text in platform.letters(recipient) if m["kind"] == "address_changed"]


def traceparent() -> tuple[str, str]:
    """A caller's fresh trace: its id and the `traceparent` that starts it."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


async def test_ops2_one_request_is_one_trace_across_gateway_contracts_kafka_loyalty_and_notifier(
    traced: tuple[Platform, Path],
) -> None:
    platform, trace_file = traced

    async def send(source: str, *messages: Any) -> None:
        await publish(platform.prefix, source, *messages)

    customer = await onboard(platform, send)
    enable_two_factor(platform, customer.token, customer.person)
    strong = log_in_with_sms(platform, customer.person, PASSWORD)
    with platform.gateway(strong["access_token"]) as portal:
        listed: list[dict[str, Any]] = answer(portal.get("/contracts"))  # type: ignore[assignment]
        policy_id = next(
            c["policy_id"] for c in listed if c["policy_number"] == customer.policy_number
        )

        # The request under test: a move, in the caller's trace, continued by every hop.
        move_trace, header = traceparent()
        moved = portal.post(
            f"/contracts/{policy_id}/moves",
            json={
                "new_address": {"recipient": customer.person.recipient, **NEW_ADDRESS},
                "moved_on": "2026-04-01",
            },
            headers={"traceparent": header, "Idempotency-Key": unique("move")},
        )
        assert moved.status_code == 204, moved.text
        spans = eventually(
            reached(
                trace_file,
                move_trace,
                {"gateway", "contracts"},
                {"loyalty", "identity", "notifier"},
            ),
            within=120,
        )
        assert consumed_in(spans, "loyalty"), spans
        # The traceparent survived identity's consume-then-append (its outbox row kept the
        # context its consumer continued): the notifier's consumer span is identity's child.
        spans = eventually(continued(trace_file, move_trace, "notifier", "identity"), within=120)
        assert consumed_in(spans, "notifier"), spans
        letters = eventually(
            lambda: address_letters(platform, customer.person.recipient), within=120
        )
        ((manifest, text),) = letters
        assert manifest["recipient"][1:] == ["Heidestraße 17", "51147 Köln"]  # the old address
        assert "Bestätigung Ihrer Adressänderung" in text
        assert "Lindenallee" not in text  # the new address never goes to the old one

        # The trace's hop over HTTP: contracts asks identity for an mTAN (CT-4/ID-6).
        mobile = customer.person.mobile
        seen = len(sms_codes(platform, mobile, "mTAN"))
        mtan_trace, header = traceparent()
        asked = portal.post(
            f"/contracts/{policy_id}/bank-details/mtan",
            json={"iban": IBAN},
            headers={"traceparent": header},
        )
        assert asked.status_code == 201, asked.text
        spans = eventually(
            reached(trace_file, mtan_trace, {"gateway", "contracts", "identity"}, {"notifier"}),
            within=120,
        )
        assert served_by(spans, "identity")[0]["parent_span_id"] in {
            s["span_id"] for s in spans if s["service"] == "contracts"
        }, "identity's span continues contracts' (the trace context went with the call)"
        assert consumed_in(spans, "notifier"), spans
        next_sms_code(platform, mobile, "mTAN", seen)  # the notification it caused
