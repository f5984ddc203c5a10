"""CL-4: the claim lifecycle as an explicit state machine, and CL-3: the expected
completion date, computed from a service level in German working days.

    reported -> in_review -> documents_requested (waiting for the customer) -> in_review
             in_review -> assessment -> approved (settled) -> paid -> closed
                          assessment -> rejected -> closed
                          assessment -> documents_requested
             closed | rejected -> in_review (reopened)

Pure: the calendar and today's date are passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from contracts_schemas.claims import ClaimStatus, ClaimTransition, ClaimType

from claims.domain.calendar import WorkingDays
from claims.domain.errors import ClaimsError, Reason
from claims.domain.model import COMPLETED, Claim, HistoryEntry

S = ClaimStatus
T = ClaimTransition

TRANSITIONS: Mapping[ClaimTransition, tuple[frozenset[ClaimStatus], ClaimStatus]] = {
    T.START_REVIEW: (frozenset({S.REPORTED}), S.IN_REVIEW),
    T.REQUEST_DOCUMENTS: (frozenset({S.IN_REVIEW, S.ASSESSMENT}), S.DOCUMENTS_REQUESTED),
    T.DOCUMENTS_RECEIVED: (frozenset({S.DOCUMENTS_REQUESTED}), S.IN_REVIEW),
    T.START_ASSESSMENT: (frozenset({S.IN_REVIEW}), S.ASSESSMENT),
    T.SETTLE: (frozenset({S.ASSESSMENT}), S.APPROVED),
    T.REJECT: (frozenset({S.ASSESSMENT}), S.REJECTED),
    T.PAY: (frozenset({S.APPROVED}), S.PAID),
    T.CLOSE: (frozenset({S.PAID, S.REJECTED}), S.CLOSED),
    T.REOPEN: (frozenset({S.CLOSED, S.REJECTED}), S.IN_REVIEW),
}

STATUS_LABELS: Mapping[ClaimStatus, str] = {
    S.REPORTED: "Eingegangen",
    S.IN_REVIEW: "In Prüfung",
    S.DOCUMENTS_REQUESTED: "Wartet auf Ihre Unterlagen",
    S.ASSESSMENT: "In Begutachtung",
    S.APPROVED: "Reguliert",
    S.REJECTED: "Abgelehnt",
    S.PAID: "Ausgezahlt",
    S.CLOSED: "Abgeschlossen",
}

# The statuses in which the service level runs: not decided, not waiting for the customer.
RUNNING = frozenset({S.REPORTED, S.IN_REVIEW, S.ASSESSMENT})
DEFAULT_OVERDUE_EXTENSION = 5  # working days: one working week

DEFAULT_SERVICE_LEVELS: Mapping[ClaimType, int] = {
    ClaimType.LIABILITY: 20,
    ClaimType.MOTOR: 15,
    ClaimType.ACCIDENT: 20,
    ClaimType.LEGAL_PROTECTION: 10,
    ClaimType.HOUSEHOLD: 10,
    ClaimType.BUILDING: 15,
    ClaimType.HEALTH_BENEFIT: 10,
    ClaimType.LIFE_BENEFIT: 30,
}


def allowed_transitions(status: ClaimStatus) -> list[ClaimTransition]:
    return [t for t, (sources, _) in TRANSITIONS.items() if status in sources]


@dataclass(frozen=True, slots=True)
class Step:
    """What claims handling (or the customer's upload) asks of a claim."""

    transition: ClaimTransition
    missing_documents: tuple[str, ...] = ()
    amount_cents: int | None = None
    reason: str = ""


def target_of(claim: Claim, step: Step) -> ClaimStatus:
    """The status `step` leads to, or a refusal saying why (CL-4)."""
    if not claim.trackable:
        raise ClaimsError(
            Reason.NOT_TRACKED,
            "Dieser Vorgang wird nicht im Portal geführt; sein Stand kann hier nicht "
            "geändert werden.",
        )
    sources, target = TRANSITIONS[step.transition]
    if claim.status not in sources:
        allowed = allowed_transitions(claim.status)
        raise ClaimsError(
            Reason.ILLEGAL_TRANSITION,
            f"Ein Vorgang im Stand '{STATUS_LABELS[claim.status]}' kann nicht "
            f"'{step.transition.value}' werden; erlaubt: "
            f"{', '.join(t.value for t in allowed) or 'nichts mehr'}.",
            extensions={
                "status": claim.status.value,
                "transition": step.transition.value,
                "allowed_transitions": [t.value for t in allowed],
            },
        )
    if step.transition is T.REQUEST_DOCUMENTS and not step.missing_documents:
        raise ClaimsError(Reason.INVALID, "Bitte nennen Sie die fehlenden Unterlagen.")
    if step.transition is T.SETTLE and step.amount_cents is None:
        raise ClaimsError(Reason.INVALID, "Eine Regulierung braucht einen Betrag.")
    if step.transition in (T.REJECT, T.REOPEN) and not step.reason.strip():
        raise ClaimsError(Reason.INVALID, "Bitte geben Sie einen Grund an.")
    return target


@dataclass(frozen=True, slots=True)
class Schedule:
    """CL-3: the service level per claim type in German working days."""

    calendar: WorkingDays
    levels: Mapping[ClaimType, int] = field(default_factory=lambda: dict(DEFAULT_SERVICE_LEVELS))
    # CL-3: how far an overdue claim's date moves: to this many working days after the
    # day it was found overdue.
    overdue_extension: int = DEFAULT_OVERDUE_EXTENSION

    def expected(self, claim: Claim, today: date) -> date | None:
        """The expected completion date as of `today`: none once decided or untracked;
        while the claim waits for the customer, the clock stands still (the date is then
        the one that holds if the customer answers today)."""
        if claim.status in COMPLETED or not claim.trackable or claim.clock_start is None:
            return None
        paused = claim.paused_working_days
        if claim.waiting_since is not None:
            paused += self.calendar.between(claim.waiting_since, today)
        days = self.levels[claim.claim_type] + claim.extended_working_days + paused
        return self.calendar.add(claim.clock_start, days)


def start(claim: Claim, schedule: Schedule, today: date) -> None:
    """A new claim: the service level starts on the day it was reported."""
    claim.clock_start = today
    claim.expected_completion_date = schedule.expected(claim, today)


@dataclass(frozen=True, slots=True)
class Change:
    """One status change as it is announced (ClaimStatusChanged) and kept in the history."""

    old_status: ClaimStatus
    new_status: ClaimStatus
    expected_completion_date: date | None
    previous_expected_completion_date: date | None


def advance(claim: Claim, step: Step, schedule: Schedule, today: date, now: datetime) -> Change:
    """Apply `step` (already allowed by `target_of`) and recompute the expected date."""
    target = target_of(claim, step)
    old = claim.status
    if old is S.DOCUMENTS_REQUESTED and claim.waiting_since is not None:
        claim.paused_working_days += schedule.calendar.between(claim.waiting_since, today)
        claim.waiting_since = None
    if step.transition is T.REOPEN:
        # A reopened claim gets a full service level again, from the day it was reopened.
        claim.clock_start, claim.paused_working_days = today, 0
        claim.extended_working_days = 0
        claim.settled_amount_cents = None
    if target is S.DOCUMENTS_REQUESTED:
        claim.waiting_since = today
        claim.missing_documents = step.missing_documents
    else:
        claim.missing_documents = ()
    if target is S.APPROVED:
        claim.settled_amount_cents = step.amount_cents
    claim.reason = step.reason
    claim.status = target
    return _recompute(claim, old, schedule, today, now, step.reason)


def overdue(claim: Claim, today: date) -> bool:
    """CL-3: the announced date has passed while the service level runs - the claim is
    neither decided nor waiting for the customer (a wait is counted when it ends)."""
    return (
        claim.trackable
        and claim.status in RUNNING
        and claim.expected_completion_date is not None
        and claim.expected_completion_date < today
    )


def slip(claim: Claim, schedule: Schedule, today: date, now: datetime) -> Change | None:
    """CL-3: an overdue claim's date moves to `schedule.overdue_extension` working days
    after `today`, announced like a status change with the status unchanged; `None` when
    the claim is not overdue (any more: another run already moved it)."""
    if not overdue(claim, today):
        return None
    current = schedule.expected(claim, today)
    if current is None:
        return None
    target = schedule.calendar.add(today, schedule.overdue_extension)
    claim.extended_working_days += schedule.calendar.between(current, target)
    return _recompute(claim, claim.status, schedule, today, now, "")


def _recompute(
    claim: Claim, old: ClaimStatus, schedule: Schedule, today: date, now: datetime, reason: str
) -> Change:
    announced = claim.expected_completion_date
    expected = schedule.expected(claim, today)
    slipped = announced if (announced and expected and expected > announced) else None
    claim.expected_completion_date = expected
    change = Change(old, claim.status, expected, slipped)
    claim.history.append(
        HistoryEntry(
            at=now, old_status=old, new_status=claim.status,
            expected_completion_date=expected, previous_expected_completion_date=slipped,
            missing_documents=claim.missing_documents,
            settled_amount_cents=claim.settled_amount_cents, reason=reason,
        )
    )  # fmt: skip
    return change
