"""Claims on the real PostgreSQL and Kafka, driven through its HTTP app (ASGI) and the
topics: the claim journey of issue 10 (CL-1, CL-3, CL-4), untracked benefit cases (CL-3),
overdue claims slipped once by two instances at once (CL-3), uploads refused with nothing
half-stored, and what another customer cannot reach."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from claims.bootstrap import Service, build
from claims.config import ClaimsSettings
from claims.entrypoints.api import create_app
from claims.entrypoints.metrics import refresh_claims_by_status
from claims.entrypoints.scheduler import slip_overdue_claims
from claims.entrypoints.stream import subscribe
from claims_world import EXE, PDF, PNG, policy_issued
from contracts_schemas import topics
from contracts_schemas.claims import (
    ClaimReported,
    ClaimStatus,
    ClaimStatusChanged,
    ClaimTransition,
    ClaimTransitionRequested,
)
from contracts_schemas.cloudevents import decode, from_kafka
from contracts_schemas.common import Carrier, ProductLine
from prometheus_client import REGISTRY
from servicekit.auth import (
    ServiceCredentials,
    basic_authorization,
    generate_signing_key,
    mint_token,
)
from servicekit.clock import FixedClock
from servicekit.db import drop_schema
from servicekit.kafka import ensure_topics, reliable_producer
from servicekit.testing import publish, read_topic, required_env, unique, until

pytestmark = pytest.mark.integration

T = TypeVar("T")
S = ClaimStatus
HANDLING = basic_authorization("claims-handling", "handling-secret")
START = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # Tuesday


@dataclass
class Running:
    service: Service
    http: httpx.AsyncClient
    prefix: str
    clock: FixedClock
    private_key: dict[str, Any]

    def bearer(self, customer_id: str) -> dict[str, str]:
        expires = datetime.now(UTC) + timedelta(minutes=10)
        token = mint_token(self.private_key, customer_id, "portal", expires)
        return {"Authorization": f"Bearer {token}"}

    async def publish(self, *messages: Any, source: str = "/test") -> None:
        producer: AIOKafkaProducer = reliable_producer(
            required_env("PORTAL_KAFKA_BOOTSTRAP"), "claims-test"
        )
        await producer.start()
        try:
            await publish(producer, *messages, prefix=self.prefix, source=source)
        finally:
            await producer.stop()

    async def count(self, sql: str, *args: Any) -> int:
        async with self.service.runtime.pool.acquire() as conn:
            value: int = await conn.fetchval(sql, *args)
            return value


@asynccontextmanager
async def claims_service(max_upload_bytes: int = 1024 * 1024) -> AsyncIterator[Running]:
    prefix = unique("itclaims") + "."
    private_key, jwks = generate_signing_key("it")
    settings = ClaimsSettings(
        database_url=required_env("PORTAL_DATABASE_URL"),
        kafka_bootstrap=required_env("PORTAL_KAFKA_BOOTSTRAP"),
        database_schema=prefix.rstrip("."), topic_prefix=prefix,
        instance_id=prefix.rstrip("."), jwks=json.dumps(jwks),
        service_credentials={"claims-handling": ServiceCredentials.digest("handling-secret"),
                             "collections": ServiceCredentials.digest("co-secret")},
        max_upload_bytes=max_upload_bytes,
    )  # fmt: skip
    clock = FixedClock(START)
    # The topic the relay publishes to exists before the first event (no metadata waits).
    await ensure_topics(settings.kafka_bootstrap, [prefix + topics.CLAIMS_CLAIM])
    service = await build(settings, clock)
    subscribe(service.stream, service.handlers)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop(stop)) for loop in service.loops()]
    transport = httpx.ASGITransport(app=create_app(service))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://claims") as http:
            running = Running(service, http, prefix, clock, private_key)
            yield running
            # Stop only once the relay has published everything (a send in flight when the
            # broker closes would never complete).
            await until(lambda: running.count(
                "SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"))  # fmt: skip
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await service.close()
        await drop_schema(settings.database_url.get_secret_value(), settings.schema_name)


async def with_policies(running: Running, *policies: Any) -> None:
    await running.publish(*policies, source="/contracts")
    ids = [p.policy_id for p in policies]
    await until(lambda: running.count(
        "SELECT count(*) = $2 FROM policies WHERE policy_id = ANY($1)", ids, len(ids)))  # fmt: skip


def report_form(policy_id: str, claim_type: str = "household") -> dict[str, str]:
    return {
        "policy_id": policy_id, "claim_type": claim_type, "incident_date": "2026-03-01",
        "place": "Köln, Heidestraße 17", "description": "Wasserschaden in der Küche",
    }  # fmt: skip


async def move(running: Running, number: str, transition: ClaimTransition, **kw: Any) -> Any:
    body = {"message_id": unique("m"), "claim_number": number, "transition": transition.value,
            **kw}  # fmt: skip
    response = await running.http.post(
        "/internal/claims/transitions", json=body, headers={"Authorization": HANDLING}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_cl1_cl3_cl4_claim_journey_from_report_to_payment() -> None:
    async with claims_service() as running:
        customer = unique("C")
        policy = policy_issued(unique("P"), (customer,))
        await with_policies(running, policy)
        me = running.bearer(customer)

        # CL-1: a household claim with a photo, retried with the same Idempotency-Key
        files = [("attachments", ("kueche.png", PNG, "image/png"))]
        headers = {**me, "Idempotency-Key": "report-1"}
        reported = await running.http.post(
            "/claims", data=report_form(policy.policy_id), files=files, headers=headers
        )
        assert reported.status_code == 201, reported.text
        claim = reported.json()
        assert claim["claim_number"].startswith("SCH-2026-")
        assert claim["expected_completion_date"] == "2026-03-17"
        retried = await running.http.post(
            "/claims", data=report_form(policy.policy_id), files=files, headers=headers
        )
        assert retried.status_code == 201
        assert retried.json()["claim_id"] == claim["claim_id"]
        other_body = await running.http.post(
            "/claims", data={**report_form(policy.policy_id), "description": "anders"},
            files=files, headers=headers,
        )  # fmt: skip
        assert other_body.status_code == 422, other_body.text
        assert other_body.json()["type"] == "urn:portal:problem:claims-idempotency-key-reused"
        number, claim_id = claim["claim_number"], claim["claim_id"]

        # CL-4 on Kafka: claims handling starts the review and asks for the invoice
        def command(transition: ClaimTransition, message_id: str, **kw: Any) -> Any:
            return ClaimTransitionRequested(
                message_id=message_id, source_system="claims-handling", occurred_at=START,
                policy_number=policy.policy_number, claim_number=number,
                transition=transition, **kw,
            )  # fmt: skip

        review = command(ClaimTransition.START_REVIEW, "h-1")
        await running.publish(
            review, review,
            command(ClaimTransition.REQUEST_DOCUMENTS, "h-2", missing_documents=("Rechnung",)),
            source="/claims-handling",
        )  # fmt: skip

        async def shown() -> dict[str, Any]:
            response = await running.http.get(f"/claims/{claim_id}", headers=me)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        async def waiting() -> dict[str, Any] | None:
            body = await shown()
            return body if body["status"] == "documents_requested" else None

        waits = await until(waiting)
        assert waits["missing_documents"] == ["Rechnung"]

        # a week later (five working days) the customer uploads the invoice: back in review
        running.clock.set(START + timedelta(days=7))
        uploaded = await running.http.post(
            f"/claims/{claim_id}/documents", data={"document_type": "Rechnung"},
            files={"file": ("rechnung.pdf", PDF, "application/pdf")}, headers=me,
        )  # fmt: skip
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["status"] == "in_review"
        assert uploaded.json()["expected_completion_date"] == "2026-03-24"

        # CL-4 over internal HTTP: assessment, settled, paid
        await move(running, number, ClaimTransition.START_ASSESSMENT)
        await move(running, number, ClaimTransition.SETTLE, amount_cents=84_900)
        paid = await move(running, number, ClaimTransition.PAY)
        assert paid["status"] == "paid"
        illegal = await running.http.post(
            "/internal/claims/transitions", headers={"Authorization": HANDLING},
            json={"message_id": unique("m"), "claim_number": number, "transition": "settle",
                  "amount_cents": 1},
        )  # fmt: skip
        assert illegal.status_code == 409, illegal.text
        assert illegal.json()["allowed_transitions"] == ["close"]

        # CL-3: the customer sees the history and a date moved by the waiting time
        final = await shown()
        history = [(h["old_status"], h["new_status"], h["expected_completion_date"],
                    h["previous_expected_completion_date"]) for h in final["history"]]  # fmt: skip
        assert history == [
            (None, "reported", "2026-03-17", None),
            ("reported", "in_review", "2026-03-17", None),
            ("in_review", "documents_requested", "2026-03-17", None),
            ("documents_requested", "in_review", "2026-03-24", "2026-03-17"),
            ("in_review", "assessment", "2026-03-24", None),
            ("assessment", "approved", None, None),
            ("approved", "paid", None, None),
        ]
        assert final["settled_amount_cents"] == 84_900
        assert [a["document_type"] for a in final["attachments"]] == ["", "Rechnung"]

        # ClaimStatusChanged on Kafka, in order, once each
        records = await read_topic(
            required_env("PORTAL_KAFKA_BOOTSTRAP"), running.prefix + topics.CLAIMS_CLAIM,
            at_least=7,
        )  # fmt: skip
        events = [decode(from_kafka(r.headers, r.value)) for r in records]
        assert [type(e) for e in events][:1] == [ClaimReported]
        changes = [e for e in events if isinstance(e, ClaimStatusChanged)]
        assert [(e.old_status, e.new_status) for e in changes] == [
            (S.REPORTED, S.IN_REVIEW), (S.IN_REVIEW, S.DOCUMENTS_REQUESTED),
            (S.DOCUMENTS_REQUESTED, S.IN_REVIEW), (S.IN_REVIEW, S.ASSESSMENT),
            (S.ASSESSMENT, S.APPROVED), (S.APPROVED, S.PAID),
        ]  # fmt: skip
        assert changes[2].expected_completion_date == date(2026, 3, 24)
        assert changes[2].previous_expected_completion_date == date(2026, 3, 17)
        assert [e.aggregate_version for e in changes] == [2, 3, 4, 5, 6, 7]


async def test_cl3_life_and_travel_health_cases_say_tracking_is_not_offered() -> None:
    async with claims_service() as running:
        customer = unique("C")
        life = policy_issued(unique("P"), (customer,), ProductLine.LIFE,
                             Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG)  # fmt: skip
        travel = policy_issued(unique("P"), (customer,), ProductLine.TRAVEL_HEALTH,
                               Carrier.ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG)  # fmt: skip
        await with_policies(running, life, travel)
        me = running.bearer(customer)
        for policy, kind, reason in [
            (life, "life_benefit", "life-carrier"),
            (travel, "health_benefit", "travel-health"),
        ]:
            response = await running.http.post(
                "/claims", data=report_form(policy.policy_id, kind), headers=me,
                files=[("attachments", ("rechnung.pdf", PDF, "application/pdf"))],
            )  # fmt: skip
            assert response.status_code == 201, response.text
            shown = (await running.http.get(f"/claims/{response.json()['claim_id']}",
                                            headers=me)).json()  # fmt: skip
            assert shown["tracking"]["offered"] is False
            assert shown["tracking"]["reason"] == reason
            assert "keine Online-Statusverfolgung" in shown["tracking"]["message"]
            assert shown["status"] is None
            assert shown["history"] == []
            moved = await running.http.post(
                "/internal/claims/transitions", headers={"Authorization": HANDLING},
                json={"message_id": unique("m"), "claim_number": shown["claim_number"],
                      "transition": "start_review"},
            )  # fmt: skip
            assert moved.status_code == 409


async def test_uploads_oversized_mislabelled_or_empty_are_refused_with_nothing_stored() -> None:
    async with claims_service(max_upload_bytes=64 * 1024) as running:
        customer = unique("C")
        policy = policy_issued(unique("P"), (customer,))
        await with_policies(running, policy)
        me = running.bearer(customer)
        for name, content, declared, status in [
            ("gross.png", PNG + b"\0" * (64 * 1024), "image/png", 413),
            ("rechnung.pdf", EXE, "application/pdf", 415),
            ("leer.pdf", b"", "application/pdf", 422),
        ]:
            response = await running.http.post(
                "/claims", data=report_form(policy.policy_id), headers=me,
                files=[("attachments", ("foto.png", PNG, "image/png")),
                       ("attachments", (name, content, declared))],
            )  # fmt: skip
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == "application/problem+json"
        assert await running.count("SELECT count(*) FROM claims") == 0
        assert await running.count("SELECT count(*) FROM blobs") == 0
        assert await running.count("SELECT count(*) FROM events") == 0

        # to an existing claim: the same, and the claim keeps what it had
        created = await running.http.post("/claims", data=report_form(policy.policy_id),
                                          headers=me)  # fmt: skip
        assert created.status_code == 201, created.text
        claim_id = created.json()["claim_id"]
        refused = await running.http.post(
            f"/claims/{claim_id}/documents", headers=me,
            files={"file": ("rechnung.pdf", EXE, "application/pdf")},
        )  # fmt: skip
        assert refused.status_code == 415
        assert (await running.http.get(f"/claims/{claim_id}", headers=me)).json()[
            "attachments"
        ] == []
        assert await running.count("SELECT count(*) FROM blobs") == 0


async def test_another_customers_claims_and_attachments_are_unreachable() -> None:
    async with claims_service() as running:
        owner, stranger = unique("C"), unique("C")
        policy = policy_issued(unique("P"), (owner,))
        joint = policy_issued(unique("P"), (owner, stranger))
        await with_policies(running, policy, joint)
        created = await running.http.post(
            "/claims", data=report_form(policy.policy_id), headers=running.bearer(owner),
            files=[("attachments", ("foto.png", PNG, "image/png"))],
        )  # fmt: skip
        assert created.status_code == 201, created.text
        claim = created.json()
        attachment = claim["attachments"][0]["attachment_id"]
        own = await running.http.get(
            f"/claims/{claim['claim_id']}/attachments/{attachment}", headers=running.bearer(owner)
        )
        assert own.status_code == 200
        assert own.content == PNG

        them = running.bearer(stranger)
        base = f"/claims/{claim['claim_id']}"
        for method, path, kwargs in [
            ("GET", base, {}),
            ("GET", f"{base}/attachments/{attachment}", {}),
            ("POST", f"{base}/documents", {"files": {"file": ("x.pdf", PDF, "application/pdf")}}),
            ("PUT", f"{base}/notification-channel", {"json": {"channel": "sms"}}),
        ]:
            response = await running.http.request(method, path, headers=them, **kwargs)
            assert response.status_code == 404, (path, response.text)
        assert (await running.http.get("/claims", headers=them)).json() == []
        # CT-3: not on someone else's contract, nor on a joint one
        for policy_id in (policy.policy_id, joint.policy_id):
            refused = await running.http.post("/claims", data=report_form(policy_id), headers=them)
            assert refused.status_code == 404, refused.text
        assert (await running.http.get(base)).status_code == 401
        # internal routes: service credentials of a system that owns the operation
        body = {"message_id": "x", "claim_number": claim["claim_number"],
                "transition": "start_review"}  # fmt: skip
        for authorization, status in [
            (None, 401),
            (basic_authorization("collections", "co-secret"), 403),
        ]:
            headers = {"Authorization": authorization} if authorization else {}
            response = await running.http.post(
                "/internal/claims/transitions", json=body, headers=headers
            )
            assert response.status_code == status, response.text


async def test_ops2_claims_by_status_are_counted_in_postgresql() -> None:
    """OPS-2: `portal_claims{status}` from the PostgreSQL repository's count (one refresh
    round of the serving loop), every status set, 0 where no claim is."""
    async with claims_service() as running:
        customer = unique("C")
        policy = policy_issued(unique("P"), (customer,))
        await with_policies(running, policy)
        numbers = []
        for description in ("eins", "zwei", "drei"):
            created = await running.http.post(
                "/claims", data={**report_form(policy.policy_id), "description": description},
                headers=running.bearer(customer),
            )  # fmt: skip
            assert created.status_code == 201, created.text
            numbers.append(created.json()["claim_number"])
        await move(running, numbers[0], ClaimTransition.START_REVIEW)

        await refresh_claims_by_status(running.service.transactions, running.service.handlers)

        figures = {
            status: REGISTRY.get_sample_value("portal_claims", {"status": status.value})
            for status in ClaimStatus
        }
        assert figures == dict.fromkeys(ClaimStatus, 0.0) | {S.REPORTED: 2.0, S.IN_REVIEW: 1.0}


async def test_cl3_overdue_claims_slip_once_when_two_instances_run_the_job_at_once() -> None:
    """CL-3: the slip job on two claims instances at the same moment (each its own pool,
    the same schema): every overdue claim is slipped and announced exactly once - one
    ClaimStatusChanged with the status unchanged and the date announced before, in the
    event store and on Kafka; the claims that are not overdue are left alone."""
    async with claims_service() as running:
        customer = unique("C")
        policy = policy_issued(unique("P"), (customer,))
        await with_policies(running, policy)
        overdue, later = 12, 2
        claim_ids = []
        for n in range(overdue + later):
            if n == overdue:
                running.clock.set(START + timedelta(days=7))  # not overdue by the slip day
            created = await running.http.post(
                "/claims", data={**report_form(policy.policy_id), "description": f"Nr. {n}"},
                headers=running.bearer(customer),
            )  # fmt: skip
            assert created.status_code == 201, created.text
            claim_ids.append(created.json()["claim_id"])
        running.clock.set(START + timedelta(days=15))  # Wednesday 2026-03-18
        settings = running.service.settings
        other = await build(
            settings.model_copy(update={"instance_id": settings.instance_id + "-2"}),
            running.clock,
        )
        try:
            counts = await asyncio.gather(
                slip_overdue_claims(running.service.transactions, running.service.handlers),
                slip_overdue_claims(other.transactions, other.handlers),
            )
        finally:
            await other.close()

        assert sum(counts) == overdue
        slipped = await running.count(
            "SELECT count(DISTINCT stream_id) FROM events"
            " WHERE event_type = $1 AND stream_id = ANY($2)",
            ClaimStatusChanged.type_name(), [f"claim-{i}" for i in claim_ids[:overdue]],
        )  # fmt: skip
        assert slipped == overdue
        assert await running.count(
            "SELECT count(*) FROM events WHERE event_type = $1", ClaimStatusChanged.type_name()
        ) == overdue  # fmt: skip
        records = await read_topic(
            required_env("PORTAL_KAFKA_BOOTSTRAP"), running.prefix + topics.CLAIMS_CLAIM,
            at_least=len(claim_ids) + overdue,
        )  # fmt: skip
        notices = [
            e for e in (decode(from_kafka(r.headers, r.value)) for r in records)
            if isinstance(e, ClaimStatusChanged)
        ]  # fmt: skip
        assert sorted(e.claim_id for e in notices) == sorted(claim_ids[:overdue])
        assert {(e.old_status, e.new_status) for e in notices} == {(S.REPORTED, S.REPORTED)}
        assert {e.previous_expected_completion_date for e in notices} == {date(2026, 3, 17)}
        assert {e.expected_completion_date for e in notices} == {date(2026, 3, 25)}
        shown = await running.http.get(f"/claims/{claim_ids[0]}", headers=running.bearer(customer))
        assert shown.json()["expected_completion_date"] == "2026-03-25"
