"""Events of the claims context (CL-1..CL-5), topic `portal.claims.claim.v1`, and the
commands of the upstream claims-handling system, topic `upstream.claims.v1`.

Events carry ids, types, statuses, dates and amounts; the free text of a report (what
happened, where), the reasons written by claims handling and the attachments stay in the
claims service (health cases may describe diagnoses: never on Kafka, NT-5)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from contracts_schemas.base import Event, Identifier, Text, UpstreamMessage
from contracts_schemas.common import NotificationChannel, ProductLine


class ClaimStatus(StrEnum):
    """CL-4. `documents_requested` is "waiting for the customer", `approved` is "settled"."""

    REPORTED = "reported"
    IN_REVIEW = "in_review"
    DOCUMENTS_REQUESTED = "documents_requested"
    APPROVED = "approved"
    PAID = "paid"
    REJECTED = "rejected"
    CLOSED = "closed"
    ASSESSMENT = "assessment"


class ClaimType(StrEnum):
    """CL-1 property/casualty claims, CL-2 health benefit cases, and benefit cases of the
    life carrier (received, never tracked online: CL-3)."""

    LIABILITY = "liability"
    MOTOR = "motor"
    ACCIDENT = "accident"
    LEGAL_PROTECTION = "legal_protection"
    HOUSEHOLD = "household"
    BUILDING = "building"
    HEALTH_BENEFIT = "health_benefit"
    LIFE_BENEFIT = "life_benefit"


class ClaimTransition(StrEnum):
    """What claims handling does to a claim (CL-4); the claims service decides whether it
    is allowed in the claim's current status."""

    START_REVIEW = "start_review"
    REQUEST_DOCUMENTS = "request_documents"
    DOCUMENTS_RECEIVED = "documents_received"
    START_ASSESSMENT = "start_assessment"
    SETTLE = "settle"
    REJECT = "reject"
    PAY = "pay"
    CLOSE = "close"
    REOPEN = "reopen"


class ClaimEvent(Event):
    context: ClassVar[str] = "claims"

    claim_id: Identifier = Field(min_length=1, max_length=100)


class ClaimReported(ClaimEvent):
    claim_number: Identifier
    policy_id: Identifier
    customer_id: Identifier
    notification_channel: NotificationChannel = NotificationChannel.EMAIL
    claim_type: ClaimType | None = None
    product_line: ProductLine | None = None
    incident_date: date | None = None
    trackable: bool = True
    expected_completion_date: date | None = None


class ClaimStatusChanged(ClaimEvent):
    """CL-4: every status change, with old and new status and the expected completion."""

    claim_number: Identifier
    customer_id: Identifier
    old_status: ClaimStatus
    new_status: ClaimStatus
    expected_completion_date: date | None = None
    # CL-3: set when the expected date moved later than the one announced before (a slip);
    # old_status == new_status when only the date moved.
    previous_expected_completion_date: date | None = None
    missing_documents: tuple[Text, ...] = ()
    settled_amount_cents: int | None = Field(default=None, ge=0)


class ClaimNotificationChannelChosen(ClaimEvent):
    """CL-5: the customer chooses how to hear about status changes."""

    customer_id: Identifier
    channel: NotificationChannel


class ClaimTransitionRequested(UpstreamMessage):
    """CL-4: the claims-handling system moves a claim (topic `upstream.claims.v1`, or the
    claims service's internal HTTP API). `message_id` deduplicates per `source_system`."""

    claim_number: Identifier = Field(min_length=1, max_length=100)
    transition: ClaimTransition
    missing_documents: tuple[Text, ...] = Field(default=(), max_length=20)
    amount_cents: int | None = Field(default=None, ge=0)
    reason: Text = Field(default="", max_length=2000)
