"""CL-3: "When the date slips, the customer is told (a slip is a status notice too)" - also
when nothing happens to the claim: the overdue slip job moves a passed date and announces
it as a ClaimStatusChanged with the status unchanged, once per passed date."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime

import pytest
from claims import commands as c
from claims.domain.calendar import WorkingDays
from claims.domain.lifecycle import Schedule
from claims.entrypoints.scheduler import slip_overdue_claims
from claims.handlers import ClaimsHandlers
from claims_world import PDF, World, policy_issued
from contracts_schemas.claims import ClaimStatus, ClaimStatusChanged, ClaimTransition, ClaimType
from contracts_schemas.common import Carrier, ProductLine
from servicekit.unit_of_work import ConcurrencyConflict

S = ClaimStatus
T = ClaimTransition
# The world's claims are reported on Tuesday 2026-03-03: household, 10 working days.
ANNOUNCED = date(2026, 3, 17)


def berlin_noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 11, 0, tzinfo=UTC)


async def slips(world: World) -> int:
    slipped: int = await slip_overdue_claims(world.transactions, world.handlers)
    return slipped


def slip_notices(world: World) -> list[ClaimStatusChanged]:
    return [e for e in world.published(ClaimStatusChanged) if e.old_status is e.new_status]


async def test_cl3_an_overdue_claim_slips_and_the_customer_is_told_once_per_passed_date(
    world: World,
) -> None:
    claim = await world.report()
    await world.move(claim, T.START_REVIEW)
    assert claim.expected_completion_date == ANNOUNCED

    world.clock.set(berlin_noon(ANNOUNCED))  # the announced day itself has not passed
    assert await slips(world) == 0
    world.clock.set(berlin_noon(date(2026, 3, 18)))
    assert await slips(world) == 1
    assert await slips(world) == 0  # the same day again: nothing more to announce

    [notice] = slip_notices(world)
    assert (notice.old_status, notice.new_status) == (S.IN_REVIEW, S.IN_REVIEW)
    assert notice.previous_expected_completion_date == ANNOUNCED
    # five working days after the day it was found overdue
    assert notice.expected_completion_date == date(2026, 3, 25)
    assert notice.aggregate_version == 3
    stored = world.uow.claims.rows[claim.claim_id]
    assert stored.expected_completion_date == date(2026, 3, 25)
    assert stored.history[-1].previous_expected_completion_date == ANNOUNCED
    assert stored.history[-1].new_status is S.IN_REVIEW

    world.clock.set(berlin_noon(date(2026, 3, 26)))  # the new date passed too
    assert await slips(world) == 1
    assert [(n.previous_expected_completion_date, n.expected_completion_date)
            for n in slip_notices(world)] == [
        (ANNOUNCED, date(2026, 3, 25)), (date(2026, 3, 25), date(2026, 4, 2)),
    ]  # fmt: skip


async def test_cl3_the_slipped_date_counts_working_days_without_public_holidays(
    world: World,
) -> None:
    claim = await world.report()
    world.clock.set(berlin_noon(date(2026, 4, 1)))  # Wednesday before Easter
    assert await slips(world) == 1
    [notice] = slip_notices(world)
    # Thu 2.4., (Good Friday), Tue 7.4. after Easter Monday, 8.4., 9.4., 10.4.
    assert notice.expected_completion_date == date(2026, 4, 10)
    assert notice.old_status is S.REPORTED
    assert world.uow.claims.rows[claim.claim_id].status is S.REPORTED


async def test_cl3_only_running_claims_slip_not_waiting_decided_or_untracked_ones(
    world: World,
) -> None:
    await world.policies(
        policy_issued("P-life", ("C-1",), ProductLine.LIFE, Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG)
    )
    waiting = await world.report(description="wartet")
    await world.move(waiting, T.START_REVIEW)
    await world.move(waiting, T.REQUEST_DOCUMENTS, missing_documents=("Rechnung",))
    decided = await world.report(description="entschieden")
    for step, kw in ((T.START_REVIEW, {}), (T.START_ASSESSMENT, {}), (T.REJECT, {"reason": "x"})):
        await world.move(decided, step, **kw)
    await world.report(policy="P-life", claim_type=ClaimType.LIFE_BENEFIT)
    assessed = await world.report(description="Gutachten")
    await world.move(assessed, T.START_REVIEW)
    await world.move(assessed, T.START_ASSESSMENT)
    changes_before = len(world.published(ClaimStatusChanged))

    world.clock.set(berlin_noon(date(2026, 6, 1)))
    assert await slips(world) == 1  # the one in assessment

    [notice] = slip_notices(world)
    assert notice.claim_id == assessed.claim_id
    assert len(world.published(ClaimStatusChanged)) == changes_before + 1


async def test_cl3_a_wait_after_a_slip_adds_to_the_slipped_date_and_reopening_starts_afresh(
    world: World,
) -> None:
    claim = await world.report()
    await world.move(claim, T.START_REVIEW)
    world.clock.set(berlin_noon(date(2026, 3, 18)))
    await slips(world)  # -> 2026-03-25
    await world.move(claim, T.REQUEST_DOCUMENTS, missing_documents=("Rechnung",))
    world.clock.set(berlin_noon(date(2026, 3, 20)))  # two working days waited
    back = await world.run(
        world.handlers.upload,
        c.UploadDocument("C-1", claim.claim_id, c.File("rechnung.pdf", PDF), "Rechnung"),
    )
    assert back.expected_completion_date == date(2026, 3, 27)
    for step, kw in ((T.START_ASSESSMENT, {}), (T.REJECT, {"reason": "nicht versichert"})):
        await world.move(claim, step, **kw)
    reopened = await world.move(claim, T.REOPEN, reason="neues Gutachten")
    # a full service level from the day of reopening, without the earlier extension
    assert reopened.expected_completion_date == date(2026, 4, 7)


async def test_cl3_the_extension_is_configurable(world: World) -> None:
    handlers = ClaimsHandlers(world.clock, Schedule(WorkingDays(), overdue_extension=1))
    await world.report()
    world.clock.set(berlin_noon(date(2026, 3, 18)))
    assert await slip_overdue_claims(world.transactions, handlers) == 1
    [notice] = slip_notices(world)
    assert notice.expected_completion_date == date(2026, 3, 19)


async def test_cl3_a_slip_decided_on_a_stale_read_is_refused_by_the_stream_version(
    world: World,
) -> None:
    """Two instances at once: the second read the claim before the first committed its
    slip; the stream version refuses its append (its transaction then decides again, on
    the stored claim, which is not overdue any more)."""
    claim = await world.report()
    world.clock.set(berlin_noon(date(2026, 3, 18)))
    read_before = copy.deepcopy(world.uow.claims.rows[claim.claim_id])
    assert await slips(world) == 1
    slipped = world.uow.claims.rows[claim.claim_id]

    world.uow.claims.rows[claim.claim_id] = read_before
    with pytest.raises(ConcurrencyConflict):
        await world.handlers.slip_if_overdue(c.SlipOverdueClaim(claim.claim_id), world.uow)
    world.uow.claims.rows[claim.claim_id] = slipped
    assert (
        await world.run(world.handlers.slip_if_overdue, c.SlipOverdueClaim(claim.claim_id)) is None
    )

    assert len(slip_notices(world)) == 1


async def test_cl3_many_overdue_claims_are_slipped_in_batches(world: World) -> None:
    for n in range(7):
        await world.report(description=f"Schaden {n}")
    world.clock.set(berlin_noon(date(2026, 3, 18)))
    assert await slip_overdue_claims(world.transactions, world.handlers, batch=3) == 7
    assert len(slip_notices(world)) == 7
