"""What the handlers are asked to do (customers through the API, claims handling through
Kafka or the internal API)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from contracts_schemas.claims import ClaimType
from contracts_schemas.common import NotificationChannel

from claims.domain.lifecycle import Step


@dataclass(frozen=True, slots=True)
class File:
    """An uploaded file as it came: judged by servicekit.uploads, never by its name."""

    filename: str | None
    content: bytes
    declared_type: str | None = None


@dataclass(frozen=True, slots=True)
class ReportClaim:
    """CL-1 (property/casualty claim) and CL-2 (health benefit case)."""

    customer_id: str
    policy_id: str
    claim_type: ClaimType
    incident_date: date
    place: str
    description: str
    files: tuple[File, ...] = ()
    document_types: tuple[str, ...] = ()
    notification_channel: NotificationChannel | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class MoveClaim:
    """CL-4: claims handling moves a claim; (source_system, message_id) deduplicates."""

    source_system: str
    message_id: str
    claim_number: str
    step: Step


@dataclass(frozen=True, slots=True)
class FindOverdueClaims:
    """CL-3: which claims' expected dates passed before they were decided."""

    limit: int = 500


@dataclass(frozen=True, slots=True)
class SlipOverdueClaim:
    """CL-3: move an overdue claim's date and tell the customer (once per slip)."""

    claim_id: str


@dataclass(frozen=True, slots=True)
class ShowClaim:
    customer_id: str
    claim_id: str


@dataclass(frozen=True, slots=True)
class ListClaims:
    customer_id: str


@dataclass(frozen=True, slots=True)
class CountByStatus:
    """OPS-2: how many claims are in each status (the claims-by-status gauge)."""


@dataclass(frozen=True, slots=True)
class UploadDocument:
    """The customer adds a document; to a waiting claim it moves it back into review."""

    customer_id: str
    claim_id: str
    file: File
    document_type: str = ""


@dataclass(frozen=True, slots=True)
class DownloadAttachment:
    customer_id: str
    claim_id: str
    attachment_id: str


@dataclass(frozen=True, slots=True)
class ChooseChannel:
    """CL-5 for one claim."""

    customer_id: str
    claim_id: str
    channel: NotificationChannel


@dataclass(frozen=True, slots=True)
class ChooseDefaultChannel:
    """CL-5 as the default for new claims and for open claims without a choice of their own."""

    customer_id: str
    channel: NotificationChannel


@dataclass(frozen=True, slots=True)
class ShowDefaultChannel:
    customer_id: str
