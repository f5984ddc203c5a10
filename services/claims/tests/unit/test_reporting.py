"""CL-1/CL-2 reporting, CT-3 visibility, Idempotency-Key, uploads judged by their bytes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from claims import commands as c
from claims.domain.errors import ClaimsError, Reason
from claims_world import EXE, PDF, PNG, World, policy_issued
from contracts_schemas.claims import ClaimReported, ClaimStatus, ClaimType
from contracts_schemas.common import Carrier, NotificationChannel, ProductLine


async def test_cl1_household_claim_gets_a_number_at_once_and_an_expected_date(
    world: World,
) -> None:
    claim = await world.report()
    assert claim.claim_number == "SCH-2026-0000001"
    assert claim.status is ClaimStatus.REPORTED
    # CL-3: 10 working days for household claims from Tuesday 2026-03-03
    assert claim.expected_completion_date == date(2026, 3, 17)
    [attachment] = claim.attachments
    assert attachment.content_type == "image/png"
    assert (await world.uow.blobs.get(attachment.attachment_id)) is not None
    [reported] = world.published(ClaimReported)
    assert reported.claim_number == claim.claim_number
    assert reported.customer_ids == ("C-1",)
    assert reported.trackable is True
    assert reported.expected_completion_date == date(2026, 3, 17)
    assert "Wasser" not in reported.model_dump_json()  # the description stays here


async def test_cl1_same_idempotency_key_and_body_is_one_claim(world: World) -> None:
    first = await world.report(idempotency_key="k-1")
    again = await world.report(idempotency_key="k-1")
    assert again.claim_id == first.claim_id
    assert len(world.published(ClaimReported)) == 1
    # the key is scoped by customer: another customer's same key is theirs
    await world.policies(policy_issued("P-2", ("C-2",)))
    other = await world.report(customer="C-2", policy="P-2", idempotency_key="k-1")
    assert other.claim_id != first.claim_id


async def test_cl1_same_idempotency_key_with_another_body_is_refused(world: World) -> None:
    await world.report(idempotency_key="k-1")
    with pytest.raises(ClaimsError) as refused:
        await world.report(idempotency_key="k-1", description="Anderer Schaden")
    assert refused.value.reason is Reason.IDEMPOTENCY_KEY_REUSED


@pytest.mark.parametrize(
    ("holders", "line", "extra"),
    [
        (("C-1", "C-9"), ProductLine.HOUSEHOLD_CONTENTS, {}),  # joint policyholders
        (("C-9",), ProductLine.HOUSEHOLD_CONTENTS, {}),  # not policyholder
        (("C-9",), ProductLine.COMPANY_HEALTH, {"insured_person_ids": ("C-1",)}),
    ],
)
async def test_ct3_claims_only_on_contracts_the_customer_may_see(
    world: World, holders: tuple[str, ...], line: ProductLine, extra: dict[str, object]
) -> None:
    await world.policies(policy_issued("P-X", holders, line, **extra))  # type: ignore[arg-type]
    kind = ClaimType.HEALTH_BENEFIT if line is ProductLine.COMPANY_HEALTH else ClaimType.HOUSEHOLD
    with pytest.raises(ClaimsError) as refused:
        await world.report(policy="P-X", claim_type=kind)
    assert refused.value.reason is Reason.CONTRACT_NOT_FOUND
    assert world.uow.claims.rows == {}


async def test_ct3_company_health_shown_to_the_insured_when_allowed(world: World) -> None:
    await world.policies(policy_issued(
        "P-B", ("EMPLOYER",), ProductLine.COMPANY_HEALTH,
        Carrier.ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG,
        insured_person_ids=("C-1",), visible_to_insured=True,
    ))  # fmt: skip
    claim = await world.report(policy="P-B", claim_type=ClaimType.HEALTH_BENEFIT)
    assert claim.trackable


async def test_cl1_claim_type_must_fit_the_contract(world: World) -> None:
    with pytest.raises(ClaimsError) as refused:
        await world.report(claim_type=ClaimType.MOTOR)
    assert refused.value.reason is Reason.WRONG_CLAIM_TYPE


async def test_cl1_incident_outside_the_policy_term_is_refused(world: World) -> None:
    with pytest.raises(ClaimsError) as refused:
        await world.report(incident_date=date(2019, 12, 31))
    assert refused.value.reason is Reason.NOT_COVERED


async def test_cl2_health_benefit_case_with_invoice_and_prescription(world: World) -> None:
    await world.policies(policy_issued(
        "P-H", ("C-1",), ProductLine.FULL_HEALTH, Carrier.ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG
    ))  # fmt: skip
    claim = await world.report(
        policy="P-H", claim_type=ClaimType.HEALTH_BENEFIT, place="", description="",
        files=(c.File("rechnung.pdf", PDF), c.File("rezept.jpg.png", PNG)),
        document_types=("Arztrechnung", "Rezept"),
    )  # fmt: skip
    assert claim.claim_number.startswith("LF-2026-")
    assert [a.document_type for a in claim.attachments] == ["Arztrechnung", "Rezept"]
    assert claim.trackable
    assert claim.expected_completion_date == date(2026, 3, 17)


@pytest.mark.parametrize(
    ("line", "carrier", "kind"),
    [
        (ProductLine.LIFE, Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG, ClaimType.LIFE_BENEFIT),
        (ProductLine.OCCUPATIONAL_DISABILITY, Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG,
         ClaimType.LIFE_BENEFIT),
        (ProductLine.TRAVEL_HEALTH, Carrier.ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG,
         ClaimType.HEALTH_BENEFIT),
    ],
)  # fmt: skip
async def test_cl3_life_carrier_and_travel_health_cases_are_not_tracked_online(
    world: World, line: ProductLine, carrier: Carrier, kind: ClaimType
) -> None:
    await world.policies(policy_issued("P-L", ("C-1",), line, carrier))
    claim = await world.report(policy="P-L", claim_type=kind, files=(c.File("a.pdf", PDF),))
    assert not claim.trackable
    assert claim.expected_completion_date is None
    [reported] = world.published(ClaimReported)
    assert reported.trackable is False


@pytest.mark.parametrize(
    ("name", "content", "status"),
    [
        ("schaden.pdf", EXE, 415),
        ("leer.pdf", b"", 422),
        ("gross.png", PNG + b"\0" * 2_000_000, 413),
    ],
)
async def test_uploads_refused_by_their_bytes_leave_nothing_stored(
    world: World, name: str, content: bytes, status: int
) -> None:
    with pytest.raises(ClaimsError) as refused:
        await world.report(files=(c.File("ok.png", PNG), c.File(name, content, "application/pdf")))
    assert refused.value.reason is Reason.UPLOAD_REFUSED
    assert refused.value.status == status
    assert world.uow.claims.rows == {}
    assert world.uow.blobs.blobs == {}
    assert world.uow.events.published == []


async def test_cl5_channel_given_with_the_report_or_taken_from_the_default(world: World) -> None:
    sms = await world.report(notification_channel=NotificationChannel.SMS)
    assert sms.channel is NotificationChannel.SMS
    await world.run(world.handlers.choose_default_channel,
                    c.ChooseDefaultChannel("C-1", NotificationChannel.SMS))  # fmt: skip
    defaulted = await world.report(description="Zweiter Schaden")
    assert defaulted.channel is NotificationChannel.SMS
    assert [r.notification_channel for r in world.published(ClaimReported)] == [
        NotificationChannel.SMS, NotificationChannel.SMS,
    ]  # fmt: skip


async def test_incident_in_the_future_is_refused(world: World) -> None:
    world.clock.set(datetime(2026, 2, 27, 12, tzinfo=UTC))
    with pytest.raises(ClaimsError) as refused:
        await world.report()
    assert refused.value.reason is Reason.INVALID
