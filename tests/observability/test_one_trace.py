"""OPS-2: one customer request through the gateway is one trace across every service it
reaches - the services it calls over HTTP, the events they record on Kafka and the
consumers that apply them. Real processes (gateway, identity, contracts, loyalty,
notifier with its SMS stand-in), the real broker and database; spans read from the file
every process appends to (PORTAL_TRACE_FILE).

The request: the customer asks for an mTAN to change the bank details of a policy
(CT-4/ID-6). The gateway forwards it to contracts, contracts asks identity over HTTP (its
client injects the trace context: `servicekit.tracing.traced_client`), identity records
`MtanRequested` and the notifier consumes it and sends the SMS - all in the one trace the
caller started. The change itself, sent with the confirmed mTAN, is again one request
and one trace: gateway -> contracts -> identity (the mTAN used up) -> `BankDetailsChanged`
on Kafka -> loyalty's consumer. (No single request reaches both loyalty and the
notifier: the notifier reads no contracts event, loyalty no identity code event.)"""

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


async def publish(prefix: str, source: str, *messages: Any) -> None:
    producer: AIOKafkaProducer = reliable_producer(
        required_env("PORTAL_KAFKA_BOOTSTRAP"), unique("trace-producer")
    )
    await producer.start()
    try:
        await testing.publish(producer, *messages, prefix=prefix, source=source)
    finally:
        await producer.stop()


def traceparent() -> tuple[str, str]:
    """A caller's fresh trace: its id and the `traceparent` that starts it."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


async def test_ops2_one_request_is_one_trace_across_gateway_contracts_identity_kafka_and_consumers(
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
        mobile = customer.person.mobile
        seen = len(sms_codes(platform, mobile, "mTAN"))

        # The request under test: the caller's trace, continued by every hop.
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
        code = next_sms_code(platform, mobile, "mTAN", seen)  # the notification it caused

        sent = asked.json()
        answer(portal.post(sent["confirm_path"], json={"code": code}))

        # The change, confirmed with that mTAN: one request, one trace, to loyalty.
        change_trace, header = traceparent()
        changed = portal.put(
            f"/contracts/{policy_id}/bank-details",
            json={"iban": IBAN, "mtan_id": sent["mtan_id"]},
            headers={"traceparent": header},
        )
        assert changed.status_code == 204, changed.text
        spans = eventually(
            reached(trace_file, change_trace, {"gateway", "contracts", "identity"}, {"loyalty"}),
            within=120,
        )
        assert consumed_in(spans, "loyalty"), spans
