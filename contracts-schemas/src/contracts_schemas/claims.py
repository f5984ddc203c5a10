"""Events of the claims context (CL-1..CL-5), topic `portal.claims.claim.v1`."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from contracts_schemas.base import Event, Identifier
from contracts_schemas.common import NotificationChannel


class ClaimStatus(StrEnum):
    REPORTED = "reported"
    IN_REVIEW = "in_review"
    DOCUMENTS_REQUESTED = "documents_requested"
    APPROVED = "approved"
    PAID = "paid"
    REJECTED = "rejected"
    CLOSED = "closed"


class ClaimEvent(Event):
    context: ClassVar[str] = "claims"

    claim_id: Identifier = Field(min_length=1, max_length=100)


class ClaimReported(ClaimEvent):
    claim_number: Identifier
    policy_id: Identifier
    customer_id: Identifier
    notification_channel: NotificationChannel = NotificationChannel.EMAIL


class ClaimStatusChanged(ClaimEvent):
    """CL-4: every status change, with old and new status and the expected completion."""

    claim_number: Identifier
    customer_id: Identifier
    old_status: ClaimStatus
    new_status: ClaimStatus
    expected_completion_date: date | None = None


class ClaimNotificationChannelChosen(ClaimEvent):
    """CL-5: the customer chooses how to hear about status changes."""

    customer_id: Identifier
    channel: NotificationChannel
