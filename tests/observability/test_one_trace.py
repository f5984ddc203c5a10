"""OPS-2: one trace follows a request from the gateway through the services it reaches,
the events it causes on Kafka and the consumers that apply them - real processes (gateway,
contracts, loyalty, notifier), the real broker and database, spans read from the file
every process appends to (PORTAL_TRACE_FILE)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from e2e_factories import account_activated, policy_issued, registered
from e2e_harness import SYSTEMS, eventually, free_port
from servicekit import testing
from servicekit.auth import ServiceCredentials, generate_signing_key, mint_token
from servicekit.kafka import reliable_producer
from servicekit.testing import required_env, unique

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
BERLIN = ZoneInfo("Europe/Berlin")
SERVICES = ("contracts", "loyalty", "notifier")


@contextmanager
def processes(workdir: Path, prefix: str) -> Iterator[dict[str, str]]:
    """The services and, in front of contracts and loyalty, the gateway; each writes its
    spans to one shared file."""
    private, jwks = generate_signing_key("trace")
    (workdir / "key.json").write_text(json.dumps(private))
    ports = {name: free_port() for name in (*SERVICES, "gateway")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    common = os.environ | {
        "PORTAL_TOPIC_PREFIX": prefix,
        "PORTAL_JWKS": json.dumps(jwks),
        "PORTAL_SERVICE_CREDENTIALS": json.dumps(
            {name: ServiceCredentials.digest(secret) for name, secret in SYSTEMS.items()}
        ),
        "PORTAL_TRACE_FILE": str(workdir / "traces.jsonl"),
        "PORTAL_TRACE_EXPORT_DELAY_MS": "200",
        "PORTAL_PRINT_QUEUE_DIR": str(workdir / "print-queue"),
        "PORTAL_LOG_LEVEL": "INFO",
    }
    env = {
        name: common | {
            "PORTAL_HTTP_PORT": str(ports[name]),
            "PORTAL_DATABASE_SCHEMA": f"{prefix.rstrip('.').replace('-', '_')}_{name}",
            "PORTAL_INSTANCE_ID": f"trace-{name}",
        }
        for name in SERVICES
    }  # fmt: skip
    env["gateway"] = common | {
        "PORTAL_HTTP_PORT": str(ports["gateway"]),
        "PORTAL_UPSTREAMS": json.dumps(
            {name: {"url": urls[name]} for name in ("contracts", "loyalty")}
            | {name: {"url": "http://127.0.0.1:9"} for name in ("identity", "claims", "documents")}
        ),
    }
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in (*SERVICES, "gateway"):
            log = (workdir / f"{name}.log").open("wb")
            running[name] = subprocess.Popen(
                [str(BIN / name), "serve"], env=env[name], stdout=log, stderr=subprocess.STDOUT
            )
        for name in (*SERVICES, "gateway"):
            # Four processes start at once on a machine that may be busy: be patient.
            eventually(
                lambda name=name: ready(running[name], urls[name], workdir / f"{name}.log"),
                within=240,
            )
        yield urls
    finally:
        for process in running.values():
            process.send_signal(signal.SIGTERM)
        for process in running.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def ready(process: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"{url} exited:\n{log.read_text()[-3000:]}")
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


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


def batches_linked_to(trace_file: Path, trace_id: str, service: str) -> list[dict[str, Any]]:
    """The service's batch spans (root spans of their own) that link to the trace."""
    spans = (json.loads(line) for line in trace_file.read_text().splitlines() if line)
    return [
        s for s in spans
        if s["service"] == service and s["name"].startswith("consume")
        and s["parent_span_id"] is None and trace_id in s["links"]
    ]  # fmt: skip


async def publish(prefix: str, source: str, *messages: Any) -> None:
    producer: AIOKafkaProducer = reliable_producer(
        required_env("PORTAL_KAFKA_BOOTSTRAP"), unique("trace-producer")
    )
    await producer.start()
    try:
        await testing.publish(producer, *messages, prefix=prefix, source=source)
    finally:
        await producer.stop()


def test_ops2_one_trace_from_the_gateway_through_kafka_to_loyalty_and_notifier(
    tmp_path: Path,
) -> None:
    prefix = unique("trace") + "."
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    number = f"HR-{uuid.uuid4().hex[:8].upper()}"
    with processes(tmp_path, prefix) as urls:
        at = datetime(2027, 1, 10, 9, 0, tzinfo=BERLIN)
        asyncio.run(
            publish(prefix, "/identity", registered(customer, at), account_activated(customer, at))
        )
        issued = policy_issued(number, (customer,), date(2027, 1, 1), at)
        asyncio.run(publish(prefix, "/policy-admin", issued))
        private = json.loads((tmp_path / "key.json").read_text())
        token = mint_token(private, customer, "portal", datetime.now(BERLIN).replace(year=2099))
        gateway = httpx.Client(
            base_url=urls["gateway"], headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

        def visible_contract() -> str | None:
            listed = gateway.get("/contracts")
            return (
                str(listed.json()[0]["policy_id"])
                if listed.status_code == 200 and listed.json()
                else None
            )

        policy_id = eventually(visible_contract, within=120)

        # The request under test: the caller's trace, continued by every hop.
        trace_id = secrets.token_hex(16)
        moved = gateway.post(
            f"/contracts/{policy_id}/moves",
            json={
                "new_address": {
                    "recipient": "R",
                    "street": "Hauptstraße 1",
                    "postal_code": "10115",
                    "city": "Berlin",
                },
                "moved_on": "2027-02-01",
            },
            headers={
                "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        assert moved.status_code == 204, moved.text
        trace_file = tmp_path / "traces.jsonl"

        def reached(services: set[str], trace_id: str) -> Any:
            def check() -> list[dict[str, Any]] | None:
                spans = spans_of(trace_file, trace_id)
                return spans if services <= {s["service"] for s in spans} else None

            return check

        spans = eventually(reached({"gateway", "contracts", "loyalty"}, trace_id), within=120)
        assert {s["kind"] for s in spans if s["service"] == "contracts"} >= {"SERVER"}
        assert consumed_in(spans, "loyalty"), spans
        assert eventually(lambda: batches_linked_to(trace_file, trace_id, "loyalty"))

        # The notifier consumes none of what a contracts request records (it reads identity,
        # claims, documents and loyalty events): enrolling in the programme through the
        # gateway records a loyalty event that it does consume.
        enrol_trace = secrets.token_hex(16)
        enrolled = gateway.post(
            "/loyalty/enrolment",
            headers={"traceparent": f"00-{enrol_trace}-{secrets.token_hex(8)}-01"},
        )
        assert enrolled.status_code == 201, enrolled.text
        spans = eventually(reached({"gateway", "loyalty", "notifier"}, enrol_trace), within=120)
        assert consumed_in(spans, "notifier"), spans
        assert eventually(lambda: batches_linked_to(trace_file, enrol_trace, "notifier"))
