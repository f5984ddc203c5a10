"""The claims service's domain values: policies as the service sees them (CT-3), claims
with their lifecycle state, and what a customer may claim on which contract (CL-1/CL-2).

Pure: no I/O, no clock, no framework imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from contracts_schemas.claims import ClaimStatus, ClaimType
from contracts_schemas.common import Carrier, NotificationChannel, ProductLine

PROPERTY_CASUALTY_LINES: dict[ClaimType, frozenset[ProductLine]] = {
    ClaimType.LIABILITY: frozenset({ProductLine.LIABILITY}),
    ClaimType.MOTOR: frozenset({ProductLine.MOTOR}),
    ClaimType.ACCIDENT: frozenset({ProductLine.ACCIDENT}),
    ClaimType.LEGAL_PROTECTION: frozenset({ProductLine.LEGAL_PROTECTION}),
    ClaimType.HOUSEHOLD: frozenset({ProductLine.HOUSEHOLD_CONTENTS}),
    ClaimType.BUILDING: frozenset({ProductLine.BUILDING}),
}
HEALTH_LINES = frozenset({
    ProductLine.FULL_HEALTH, ProductLine.SUPPLEMENTARY_HEALTH, ProductLine.TRAVEL_HEALTH,
    ProductLine.COMPANY_HEALTH, ProductLine.LONG_TERM_CARE,
})  # fmt: skip
LIFE_LINES = frozenset({
    ProductLine.LIFE, ProductLine.PENSION, ProductLine.OCCUPATIONAL_DISABILITY,
    ProductLine.COMPANY_PENSION,
})  # fmt: skip
CLAIMABLE_LINES: dict[ClaimType, frozenset[ProductLine]] = {
    **PROPERTY_CASUALTY_LINES,
    ClaimType.HEALTH_BENEFIT: HEALTH_LINES,
    ClaimType.LIFE_BENEFIT: LIFE_LINES,
}
# CT-3: these may be shown to the insured person when the contract allows it.
COMPANY_LINES = frozenset({ProductLine.COMPANY_PENSION, ProductLine.COMPANY_HEALTH})

# A decided claim has reached its completion: no expected date any more (CL-3).
COMPLETED = frozenset({
    ClaimStatus.APPROVED, ClaimStatus.REJECTED, ClaimStatus.PAID, ClaimStatus.CLOSED,
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Policy:
    """What the claims service keeps of contracts' policy events."""

    policy_id: str
    policy_number: str
    product_line: ProductLine
    carrier: Carrier
    policyholder_ids: tuple[str, ...]
    insured_person_ids: tuple[str, ...]
    visible_to_insured: bool
    start_date: date
    cancelled_from: date | None = None
    version: int = 0

    def visible_to(self, customer_id: str) -> bool:
        """CT-3: sole policyholder; company pension/health also the insured when allowed."""
        if self.policyholder_ids == (customer_id,):
            return True
        return (
            self.product_line in COMPANY_LINES
            and self.visible_to_insured
            and customer_id in self.insured_person_ids
        )

    def covers(self, day: date) -> bool:
        """The incident (or treatment) happened while the policy was in force."""
        return self.start_date <= day and (self.cancelled_from is None or day < self.cancelled_from)


class NotTracked(StrEnum):
    """CL-3: why online tracking is not offered for a claim."""

    LIFE_CARRIER = "life-carrier"
    TRAVEL_HEALTH = "travel-health"
    OTHER_CARRIER = "other-carrier"


NOT_TRACKED_MESSAGES: dict[NotTracked, str] = {
    NotTracked.LIFE_CARRIER: (
        "Für Leistungsfälle der Allianz Lebensversicherungs-AG bieten wir keine "
        "Online-Statusverfolgung an. Ihre Unterlagen sind eingegangen; über den Stand "
        "informiert Sie die Allianz Lebensversicherungs-AG direkt."
    ),
    NotTracked.TRAVEL_HEALTH: (
        "Für Leistungsfälle der Auslandsreise-Krankenversicherung bieten wir keine "
        "Online-Statusverfolgung an. Ihre Unterlagen sind eingegangen; wir informieren Sie "
        "direkt über den Stand."
    ),
    NotTracked.OTHER_CARRIER: (
        "Für diesen Vertrag bieten wir keine Online-Statusverfolgung an. Ihre Unterlagen "
        "sind eingegangen; wir informieren Sie direkt über den Stand."
    ),
}


def not_tracked_because(claim_type: ClaimType, policy: Policy) -> NotTracked | None:
    """CL-3: tracked are claims on Allianz Versicherungs-AG products and health benefit
    cases except travel health; benefit cases of the life carrier never."""
    if policy.carrier is Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG:
        return NotTracked.LIFE_CARRIER
    if claim_type is ClaimType.HEALTH_BENEFIT:
        if policy.product_line is ProductLine.TRAVEL_HEALTH:
            return NotTracked.TRAVEL_HEALTH
        return None
    if claim_type is ClaimType.LIFE_BENEFIT:
        return NotTracked.LIFE_CARRIER
    if policy.carrier is Carrier.ALLIANZ_VERSICHERUNGS_AG:
        return None
    return NotTracked.OTHER_CARRIER


@dataclass(frozen=True, slots=True)
class Attachment:
    attachment_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime
    # What the customer says it is ("Rechnung", ...); answers a missing document when named.
    document_type: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step of the claim as the customer sees it (CL-3 history)."""

    at: datetime
    old_status: ClaimStatus | None
    new_status: ClaimStatus
    expected_completion_date: date | None
    previous_expected_completion_date: date | None = None
    missing_documents: tuple[str, ...] = ()
    settled_amount_cents: int | None = None
    reason: str = ""


@dataclass
class Claim:
    """A claim's state; its events go to the stream `claim-<claim_id>` at `version`."""

    claim_id: str
    claim_number: str
    customer_id: str
    policy_id: str
    policy_number: str
    claim_type: ClaimType
    product_line: ProductLine
    carrier: Carrier
    incident_date: date
    place: str
    description: str
    reported_at: datetime
    not_tracked: NotTracked | None
    status: ClaimStatus = ClaimStatus.REPORTED
    # CL-3: the service level runs from `clock_start` (report, or reopening), plus the
    # working days the claim waited for the customer, plus the current wait.
    clock_start: date | None = None
    paused_working_days: int = 0
    waiting_since: date | None = None
    # CL-3: working days added each time the date passed before the claim was decided
    # (an overdue slip); a reopened claim starts without.
    extended_working_days: int = 0
    expected_completion_date: date | None = None
    missing_documents: tuple[str, ...] = ()
    settled_amount_cents: int | None = None
    reason: str = ""
    channel: NotificationChannel = NotificationChannel.EMAIL
    channel_chosen_for_claim: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    version: int = 0

    @property
    def stream_id(self) -> str:
        return f"claim-{self.claim_id}"

    @property
    def trackable(self) -> bool:
        return self.not_tracked is None

    @property
    def open(self) -> bool:
        return self.status is not ClaimStatus.CLOSED


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A customer's submission under an `Idempotency-Key`: the same key again with the
    same request is the same claim; with another request it is refused."""

    customer_id: str
    key: str
    fingerprint: str
    claim_id: str


@dataclass(frozen=True, slots=True)
class HandledMessage:
    """A claims-handling command already applied (source system + message id)."""

    source_system: str
    message_id: str
    claim_id: str
