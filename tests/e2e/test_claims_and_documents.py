"""Issue 10 end to end, through the gateway only: the claim journey (CL-1, CL-3, CL-4,
CL-5) with claims handling moving the claim and the notifier telling the customer, and a
sensitive health document behind the second factor (DOC-3)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from claims.domain.calendar import WorkingDays
from contracts_schemas import topics
from contracts_schemas.claims import ClaimStatus, ClaimStatusChanged
from contracts_schemas.cloudevents import decode, from_kafka
from e2e_factories import PASSWORD, PDF, PNG, document_for
from e2e_harness import (
    Platform,
    answer,
    enable_two_factor,
    eventually,
    log_in_with_sms,
    onboard,
    problem,
)
from servicekit.clock import BERLIN
from servicekit.testing import read_topic, required_env, unique

pytestmark = pytest.mark.e2e
S = ClaimStatus


def next_tuesday_morning() -> datetime:
    """Business time for the claim: a Tuesday 09:00 (Berlin) after today, so that the
    claim's dates lie after the policy's start and the week of waiting is five days."""
    day = datetime.now(BERLIN).date() + timedelta(days=1)
    while day.weekday() != 1:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=BERLIN)


def move(platform: Platform, number: str, transition: str, **kw: Any) -> dict[str, Any]:
    """Claims handling (an upstream system, service credentials) moves the claim (CL-4)."""
    with platform.as_system("claims", "claims-handling") as handling:
        body = {"message_id": unique("ch"), "claim_number": number, "transition": transition,
                **kw}  # fmt: skip
        return answer(handling.post("/internal/claims/transitions", json=body))


def claim_notices(platform: Platform, customer_id: str, count: int) -> list[dict[str, Any]]:
    """Waits until the notifier sent `count` claim updates to the customer (the operators'
    view of its deliveries); returns them."""

    def sent() -> list[dict[str, Any]] | None:
        with platform.as_system("notifier", "operators") as operators:
            found = answer(operators.get("/internal/notifier/deliveries",
                                         params={"customer_id": customer_id}))  # fmt: skip
        notices = [d for d in found if ".ClaimStatusChanged." in d["event_type"]]  # type: ignore[union-attr]
        done = len(notices) >= count and all(d["status"] == "sent" for d in notices)
        return notices if done else None

    found: list[dict[str, Any]] = eventually(sent)
    return found


async def test_cl1_to_cl5_a_household_claim_from_report_to_payment_through_the_gateway(
    platform: Platform, publish: Any
) -> None:
    customer = await onboard(platform, publish)
    email = customer.person.email
    start = next_tuesday_morning()
    calendar = WorkingDays()
    try:
        platform.set_time(start)
        with platform.gateway(customer.token) as portal:
            policy_id = answer(portal.get("/contracts"))[0]["policy_id"]  # type: ignore[index]

            # CL-1: a household claim with a photo, updates by e-mail (CL-5)
            def reported() -> dict[str, Any] | None:
                response = portal.post(
                    "/claims",
                    data={"policy_id": policy_id, "claim_type": "household",
                          "incident_date": start.date().isoformat(),
                          "place": "Köln, Heidestraße 17",
                          "description": "Wasserschaden in der Küche",
                          "notification_channel": "email"},
                    files=[("attachments", ("kueche.png", PNG, "image/png"))],
                    headers={"Idempotency-Key": f"claim-{customer.customer_id}"},
                )  # fmt: skip
                # claims learns of the contract from contracts' events: 404 until then
                assert response.status_code in (201, 404), response.text
                return response.json() if response.status_code == 201 else None

            claim = eventually(reported)
            claim_id, number = claim["claim_id"], claim["claim_number"]
            first_date = date.fromisoformat(claim["expected_completion_date"])

            # claims handling: review, then waiting for the invoice
            move(platform, number, "start_review")
            waiting = move(platform, number, "request_documents", missing_documents=["Rechnung"])
            assert waiting["status"] == "documents_requested"
            shown = answer(portal.get(f"/claims/{claim_id}"))
            assert shown["missing_documents"] == ["Rechnung"]
            # the customer was told before the week passes (business time moves on below)
            claim_notices(platform, customer.customer_id, 2)

            # a week later the customer uploads the invoice: back in review, date moved
            platform.set_time(start + timedelta(days=7))
            uploaded = answer(
                portal.post(
                    f"/claims/{claim_id}/documents", data={"document_type": "Rechnung"},
                    files={"file": ("rechnung.pdf", PDF, "application/pdf")},
                ),
                201,
            )  # fmt: skip
            assert uploaded["status"] == "in_review"
            waited = calendar.between(start.date(), (start + timedelta(days=7)).date())
            moved_date = calendar.add(first_date, waited)
            assert uploaded["expected_completion_date"] == moved_date.isoformat()
            assert moved_date > first_date

            move(platform, number, "start_assessment")
            move(platform, number, "settle", amount_cents=84_900)
            assert move(platform, number, "pay")["status"] == "paid"

            # CL-3: the history and the date moved by the waiting time
            final = answer(portal.get(f"/claims/{claim_id}"))
            history = [(h["old_status"], h["new_status"]) for h in final["history"]]
            assert history == [
                (None, "reported"), ("reported", "in_review"),
                ("in_review", "documents_requested"), ("documents_requested", "in_review"),
                ("in_review", "assessment"), ("assessment", "approved"), ("approved", "paid"),
            ]  # fmt: skip
            moved = final["history"][3]
            assert moved["previous_expected_completion_date"] == first_date.isoformat()
            assert moved["expected_completion_date"] == moved_date.isoformat()
            assert final["settled_amount_cents"] == 84_900
            assert [a["document_type"] for a in final["attachments"]] == ["", "Rechnung"]
            photo = final["attachments"][0]["attachment_id"]
            assert portal.get(f"/claims/{claim_id}/attachments/{photo}").content == PNG
        deliveries = claim_notices(platform, customer.customer_id, 6)
    finally:
        platform.wall_time()

    # ClaimStatusChanged on Kafka, in order
    records = await read_topic(
        required_env("PORTAL_KAFKA_BOOTSTRAP"), platform.topic(topics.CLAIMS_CLAIM), at_least=1
    )
    changes = [e for e in (decode(from_kafka(r.headers, r.value)) for r in records)
               if isinstance(e, ClaimStatusChanged) and e.claim_number == number]  # fmt: skip
    assert [(e.old_status, e.new_status) for e in changes] == [
        (S.REPORTED, S.IN_REVIEW), (S.IN_REVIEW, S.DOCUMENTS_REQUESTED),
        (S.DOCUMENTS_REQUESTED, S.IN_REVIEW), (S.IN_REVIEW, S.ASSESSMENT),
        (S.ASSESSMENT, S.APPROVED), (S.APPROVED, S.PAID),
    ]  # fmt: skip
    assert [e.aggregate_version for e in changes] == sorted(e.aggregate_version for e in changes)

    # CL-5: the notifier sent every update by e-mail, exactly once each, and no SMS
    assert len(deliveries) == len(changes) == 6
    assert {d["channel"] for d in deliveries} == {"email"}
    assert {d["event_id"] for d in deliveries} == {str(e.event_id) for e in changes}
    mails = [t for s, t in platform.mail_texts(email) if number in s]
    assert len(mails) == 6, "one e-mail per status change, none twice"
    assert platform.sms_texts(customer.person.mobile) == []


async def test_doc3_a_sensitive_health_document_needs_the_sms_login(
    platform: Platform, publish: Any
) -> None:
    customer = await onboard(platform, publish)
    with platform.as_system("documents", "output-management") as output:
        delivered = answer(
            output.post("/internal/documents", json=document_for(
                customer.customer_id, customer.policy_number, "Leistungsabrechnung Dr. Sommer",
                sensitive=True, category="health-benefit")),
            201,
        )  # fmt: skip
    document_id = delivered["document_id"]

    # password only: listed greyed out, the content refused with the way to 2FA (German)
    with platform.gateway(customer.token) as portal:
        listed = eventually(lambda: answer(portal.get("/documents"))["items"])
        entry = next(d for d in listed if d["document_id"] == document_id)
        assert entry["greyed_out"] is True
        assert "Dr. Sommer" not in entry["title"], "DOC-3: metadata only, a neutral title"
        refused = problem(portal.get(f"/documents/{document_id}/content"), 403)
        assert "Zwei-Faktor-Authentifizierung" in refused["detail"], refused
    enable_two_factor(platform, customer.token, customer.person)

    # after logging in with the SMS code the document opens
    strong = log_in_with_sms(platform, customer.person, PASSWORD)
    assert "sms" in strong.get("amr", ["sms"])
    with platform.gateway(strong["access_token"]) as portal:
        opened = portal.get(f"/documents/{document_id}/content")
        assert opened.status_code == 200, opened.text
        assert opened.content == PDF
        shown = answer(portal.get(f"/documents/{document_id}"))
        assert shown["greyed_out"] is False
        assert shown["title"] == "Leistungsabrechnung Dr. Sommer"
