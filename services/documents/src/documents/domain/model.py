"""The documents service's domain: mailbox documents, secure messages with attachments,
each customer's delivery preference, and the rules that route and guard them. Pure: no
I/O, no clock (times are passed in)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from contracts_schemas.documents import DocumentDelivery

T = TypeVar("T")

_NAMESPACE = uuid.UUID("6f1d3c52-9a0e-4d55-8f0b-5b0c7e3d2a10")


class Category(StrEnum):
    """DOC-1: what a document is about; the mailbox filters by it."""

    CONTRACT = "contract"  # policy documents, amendments, premium notices
    INVOICE = "invoice"  # premium invoices, account statements
    CLAIM = "claim"  # claim correspondence and settlements
    HEALTH_BENEFIT = "health-benefit"  # health benefit statements (often sensitive)
    TAX = "tax"  # tax certificates
    ANSWER = "answer"  # the insurer's answer to a secure message (DOC-2)
    CORRESPONDENCE = "correspondence"  # anything else


class Reason(StrEnum):
    NOT_FOUND = "not-found"
    SECOND_FACTOR_REQUIRED = "second-factor-required"
    UPLOAD_REFUSED = "upload-refused"
    NO_VERIFIED_EMAIL = "no-verified-email"
    ACCOUNT_CANCELLED = "account-cancelled"
    INVALID = "invalid"


class DocumentsError(Exception):
    """A refusal; `detail` is German and shown to the customer (or the calling system)."""

    def __init__(
        self, reason: Reason, detail: str, *, status: int | None = None, problem: str = ""
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status
        self.problem = problem or reason.value


SECOND_FACTOR_DETAIL = (
    "Dieses Dokument enthält Gesundheitsdaten und lässt sich nur öffnen, wenn Sie sich mit "
    "zweitem Faktor angemeldet haben. So schalten Sie die Zwei-Faktor-Authentifizierung "
    "ein: Öffnen Sie „Profil > Sicherheit“, hinterlegen Sie Ihre Mobilnummer und bestätigen "
    "Sie den SMS-Code. Melden Sie sich danach ab und wieder an und geben Sie bei der "
    "Anmeldung den SMS-Code ein - dann können Sie das Dokument öffnen."
)
SENSITIVE_TITLE = "Dokument mit Gesundheitsdaten"
NOT_FOUND_DETAIL = "Das haben wir nicht gefunden."


def not_found() -> DocumentsError:
    return DocumentsError(Reason.NOT_FOUND, NOT_FOUND_DETAIL)


def document_id_for(source_system: str, message_id: str) -> str:
    """DOC-1 idempotency: one upstream message (per system) is one document, whichever way
    (Kafka or HTTP) and however often it arrives."""
    return str(uuid.uuid5(_NAMESPACE, f"{source_system}\x1f{message_id}"))


@dataclass(frozen=True, slots=True)
class StoredContent:
    """Where a document's, a message's or an attachment's bytes are (sealed, DOC-3)."""

    blob_id: str
    content_type: str
    size: int
    filename: str


@dataclass(frozen=True, slots=True)
class Document:
    document_id: str
    customer_id: str
    source_system: str
    source_message_id: str
    category: Category
    title: str
    policy_number: str | None
    claim_number: str | None
    answers_message_id: str | None
    sensitive: bool
    written_form: bool
    delivery: DocumentDelivery
    content: StoredContent
    issued_at: datetime
    available_at: datetime
    read_at: datetime | None = None

    def marked(self, read_at: datetime | None) -> Document:
        return replace(self, read_at=read_at)


@dataclass(frozen=True, slots=True)
class Attachment:
    attachment_id: str
    message_id: str
    customer_id: str
    content: StoredContent


@dataclass(frozen=True, slots=True)
class SecureMessage:
    """DOC-2: from the customer to the insurer. `body` is the blob id of its sealed text."""

    message_id: str
    customer_id: str
    subject: str
    body: StoredContent
    policy_number: str | None
    claim_number: str | None
    sent_at: datetime
    answered_at: datetime | None = None
    answer_document_ids: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Preference:
    """DOC-4: what identity told about the customer's e-mail, and their choice."""

    customer_id: str
    email: str | None = None
    email_verified: bool = False
    email_instead_of_letter: bool = False
    cancelled: bool = False
    changed_at: datetime | None = None

    @property
    def verified_email(self) -> str | None:
        return self.email if self.email_verified and self.email else None


def route(preference: Preference | None, written_form: bool) -> DocumentDelivery:
    """DOC-4: written form always by post; otherwise the mailbox (with an e-mail notice)
    while e-mail instead of letter is on and a verified address is known, else by post.
    Every document is in the archive either way (DOC-1)."""
    if written_form or preference is None:
        return DocumentDelivery.POST
    if (
        preference.email_instead_of_letter
        and preference.verified_email
        and not (preference.cancelled)
    ):
        return DocumentDelivery.MAILBOX
    return DocumentDelivery.POST


def listed_title(document: Document, second_factor: bool) -> str:
    """DOC-3: without the second factor a sensitive document shows metadata only: its date,
    category and contract, not its title (a title can name a treatment)."""
    if document.sensitive and not second_factor:
        return SENSITIVE_TITLE
    return document.title


def may_open(document: Document, second_factor: bool) -> bool:
    return second_factor or not document.sensitive


@dataclass(frozen=True, slots=True)
class DocumentFilter:
    category: Category | None = None
    unread: bool | None = None
    policy_number: str | None = None
    claim_number: str | None = None
    limit: int = 20
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    total: int
    limit: int
    offset: int
