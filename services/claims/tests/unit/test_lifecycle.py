"""CL-4 lifecycle as a state machine, CL-3 expected dates in German working days, CL-5
channels, and what a customer may reach (ownership)."""

from __future__ import annotations

from datetime import date

import pytest
from claims import commands as c
from claims.domain.calendar import WorkingDays
from claims.domain.errors import ClaimsError, Reason
from claims.domain.lifecycle import TRANSITIONS, Schedule
from claims_world import PDF, PNG, World, policy_issued
from contracts_schemas.claims import (
    ClaimNotificationChannelChosen,
    ClaimStatus,
    ClaimStatusChanged,
    ClaimTransition,
    ClaimType,
)
from contracts_schemas.common import Carrier, NotificationChannel, ProductLine

S = ClaimStatus
T = ClaimTransition


async def test_cl4_cl3_journey_waiting_for_the_customer_moves_the_date_by_the_wait(
    world: World,
) -> None:
    claim = await world.report()
    assert claim.expected_completion_date == date(2026, 3, 17)
    await world.move(claim, T.START_REVIEW)
    waiting = await world.move(claim, T.REQUEST_DOCUMENTS, missing_documents=("Rechnung",))
    assert waiting.status is S.DOCUMENTS_REQUESTED
    assert waiting.missing_documents == ("Rechnung",)
    world.advance_days(7)  # Tuesday 2026-03-10: five working days waited
    back = await world.run(
        world.handlers.upload,
        c.UploadDocument("C-1", claim.claim_id, c.File("rechnung.pdf", PDF), "Rechnung"),
    )
    assert back.status is S.IN_REVIEW
    assert back.expected_completion_date == date(2026, 3, 24)
    await world.move(claim, T.START_ASSESSMENT)
    settled = await world.move(claim, T.SETTLE, amount_cents=123_456)
    assert settled.expected_completion_date is None
    paid = await world.move(claim, T.PAY)
    assert paid.status is S.PAID

    changes = world.published(ClaimStatusChanged)
    assert [(e.old_status, e.new_status) for e in changes] == [
        (S.REPORTED, S.IN_REVIEW), (S.IN_REVIEW, S.DOCUMENTS_REQUESTED),
        (S.DOCUMENTS_REQUESTED, S.IN_REVIEW), (S.IN_REVIEW, S.ASSESSMENT),
        (S.ASSESSMENT, S.APPROVED), (S.APPROVED, S.PAID),
    ]  # fmt: skip
    assert [e.expected_completion_date for e in changes] == [
        date(2026, 3, 17), date(2026, 3, 17), date(2026, 3, 24), date(2026, 3, 24), None, None,
    ]  # fmt: skip
    # CL-3: the slip is announced with the date announced before
    assert changes[2].previous_expected_completion_date == date(2026, 3, 17)
    assert [e.previous_expected_completion_date for e in changes[3:]] == [None, None, None]
    assert changes[1].missing_documents == ("Rechnung",)
    assert changes[4].settled_amount_cents == 123_456
    assert [e.aggregate_version for e in changes] == [2, 3, 4, 5, 6, 7]
    stored = world.uow.claims.rows[claim.claim_id]
    assert [h.new_status for h in stored.history] == [
        S.REPORTED, S.IN_REVIEW, S.DOCUMENTS_REQUESTED, S.IN_REVIEW, S.ASSESSMENT, S.APPROVED,
        S.PAID,
    ]  # fmt: skip


async def test_cl4_illegal_transitions_are_refused_with_the_reason(world: World) -> None:
    claim = await world.report()
    with pytest.raises(ClaimsError) as refused:
        await world.move(claim, T.PAY)
    assert refused.value.reason is Reason.ILLEGAL_TRANSITION
    assert refused.value.extensions["allowed_transitions"] == ["start_review"]
    assert "Eingegangen" in refused.value.detail
    assert world.published(ClaimStatusChanged) == []


@pytest.mark.parametrize(
    ("transition", "fields"),
    [(T.REQUEST_DOCUMENTS, {}), (T.SETTLE, {}), (T.REJECT, {"reason": " "})],
)
async def test_cl4_steps_need_their_details(
    world: World, transition: ClaimTransition, fields: dict[str, object]
) -> None:
    claim = await world.report()
    await world.move(claim, T.START_REVIEW)
    await world.move(claim, T.START_ASSESSMENT)
    with pytest.raises(ClaimsError) as refused:
        await world.move(claim, transition, **fields)  # type: ignore[arg-type]
    assert refused.value.reason is Reason.INVALID


async def test_cl4_every_status_can_move_somewhere_and_reject_close_reopen(world: World) -> None:
    assert {s for sources, _ in TRANSITIONS.values() for s in sources} == set(S)
    claim = await world.report()
    for step, fields in [
        (T.START_REVIEW, {}), (T.START_ASSESSMENT, {}), (T.REJECT, {"reason": "Kein Schaden"}),
        (T.CLOSE, {}),
    ]:  # fmt: skip
        await world.move(claim, step, **fields)  # type: ignore[arg-type]
    world.advance_days(14)  # Tuesday 2026-03-17
    reopened = await world.move(claim, T.REOPEN, reason="Neue Unterlagen")
    assert reopened.status is S.IN_REVIEW
    assert reopened.expected_completion_date == date(2026, 3, 31)  # a full service level again


async def test_cl4_the_same_handling_message_twice_has_one_effect(world: World) -> None:
    claim = await world.report()
    await world.move(claim, T.START_REVIEW, message_id="m-1")
    again = await world.move(claim, T.START_REVIEW, message_id="m-1")
    assert again.status is S.IN_REVIEW
    assert len(world.published(ClaimStatusChanged)) == 1


async def test_cl4_untracked_claims_are_not_moved_here(world: World) -> None:
    await world.policies(policy_issued(
        "P-L", ("C-1",), ProductLine.LIFE, Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG
    ))  # fmt: skip
    claim = await world.report(policy="P-L", claim_type=ClaimType.LIFE_BENEFIT)
    with pytest.raises(ClaimsError) as refused:
        await world.move(claim, T.START_REVIEW)
    assert refused.value.reason is Reason.NOT_TRACKED


def test_cl3_german_public_holidays_are_not_working_days() -> None:
    days = WorkingDays()
    # Wednesday before Easter 2026: Good Friday and Easter Monday do not count
    assert days.add(date(2026, 4, 1), 10) == date(2026, 4, 17)
    assert days.between(date(2026, 4, 2), date(2026, 4, 7)) == 1
    assert not days.is_working_day(date(2026, 10, 3))  # German Unity Day
    # a federal state's own holidays when configured (Corpus Christi in NRW, not nationwide)
    assert days.is_working_day(date(2026, 6, 4))
    assert not WorkingDays("NW").is_working_day(date(2026, 6, 4))


async def test_cl3_service_levels_are_configurable_per_claim_type(world: World) -> None:
    world.handlers.schedule = Schedule(WorkingDays(), {**world.handlers.schedule.levels,
                                                       ClaimType.HOUSEHOLD: 3})  # fmt: skip
    claim = await world.report()
    assert claim.expected_completion_date == date(2026, 3, 6)


async def test_cl3_the_date_stands_still_while_waiting(world: World) -> None:
    claim = await world.report()
    await world.move(claim, T.START_REVIEW)
    await world.move(claim, T.REQUEST_DOCUMENTS, missing_documents=("Foto",))
    world.advance_days(1)
    shown = await world.run(world.handlers.show, c.ShowClaim("C-1", claim.claim_id))
    assert world.handlers.schedule.expected(shown, date(2026, 3, 4)) == date(2026, 3, 18)


async def test_another_customers_claim_and_attachments_are_not_found(world: World) -> None:
    claim = await world.report()
    attachment = claim.attachments[0].attachment_id
    for command in (
        c.ShowClaim("C-2", claim.claim_id),
        c.DownloadAttachment("C-2", claim.claim_id, attachment),
        c.UploadDocument("C-2", claim.claim_id, c.File("x.png", PNG)),
        c.ChooseChannel("C-2", claim.claim_id, NotificationChannel.SMS),
    ):
        handler = {
            c.ShowClaim: world.handlers.show, c.DownloadAttachment: world.handlers.download,
            c.UploadDocument: world.handlers.upload, c.ChooseChannel: world.handlers.choose_channel,
        }[type(command)]  # fmt: skip
        with pytest.raises(ClaimsError) as refused:
            await world.run(handler, command)
        assert refused.value.reason is Reason.NOT_FOUND
    assert await world.run(world.handlers.list_claims, c.ListClaims("C-2")) == []
    own = await world.run(world.handlers.download, c.DownloadAttachment("C-1", claim.claim_id,
                                                                        attachment))  # fmt: skip
    assert own.blob.content == PNG


async def test_cl5_channel_per_claim_and_default_for_open_claims_without_their_own(
    world: World,
) -> None:
    chosen = await world.report()
    other = await world.report(description="Zweiter Schaden")
    await world.run(world.handlers.choose_channel,
                    c.ChooseChannel("C-1", chosen.claim_id, NotificationChannel.EMAIL))  # fmt: skip
    await world.run(world.handlers.choose_default_channel,
                    c.ChooseDefaultChannel("C-1", NotificationChannel.SMS))  # fmt: skip
    announced = world.published(ClaimNotificationChannelChosen)
    assert [(e.claim_id, e.channel) for e in announced] == [
        (other.claim_id, NotificationChannel.SMS)
    ]
    assert await world.run(world.handlers.default_channel,
                           c.ShowDefaultChannel("C-1")) is NotificationChannel.SMS  # fmt: skip
    await world.run(world.handlers.choose_channel,
                    c.ChooseChannel("C-1", chosen.claim_id, NotificationChannel.SMS))  # fmt: skip
    assert world.published(ClaimNotificationChannelChosen)[-1].claim_id == chosen.claim_id


async def test_uploads_to_a_claim_that_is_not_waiting_keep_its_status(world: World) -> None:
    claim = await world.report()
    command = c.UploadDocument("C-1", claim.claim_id, c.File("b.pdf", PDF))
    added = await world.run(world.handlers.upload, command)
    assert added.status is S.REPORTED
    assert len(added.attachments) == 2
    assert world.published(ClaimStatusChanged) == []
