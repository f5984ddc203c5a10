"""What the documents service is asked to do (entrypoints build these; handlers take them)."""

from __future__ import annotations

from dataclasses import dataclass

from documents.domain.model import DocumentFilter


@dataclass(frozen=True, slots=True)
class ListDocuments:
    customer_id: str
    second_factor: bool
    where: DocumentFilter


@dataclass(frozen=True, slots=True)
class ShowDocument:
    customer_id: str
    document_id: str
    second_factor: bool


@dataclass(frozen=True, slots=True)
class OpenDocument:
    """Download (marks the document read)."""

    customer_id: str
    document_id: str
    second_factor: bool


@dataclass(frozen=True, slots=True)
class MarkDocument:
    customer_id: str
    document_id: str
    read: bool
    second_factor: bool


@dataclass(frozen=True, slots=True)
class IncomingFile:
    filename: str | None
    content: bytes


@dataclass(frozen=True, slots=True)
class SendMessage:
    customer_id: str
    subject: str
    text: str
    policy_number: str | None = None
    claim_number: str | None = None
    files: tuple[IncomingFile, ...] = ()


@dataclass(frozen=True, slots=True)
class ListMessages:
    customer_id: str
    limit: int = 20
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ShowMessage:
    customer_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class OpenAttachment:
    """`customer_id` None: an insurer system (internal API) reads it."""

    customer_id: str | None
    message_id: str
    attachment_id: str


@dataclass(frozen=True, slots=True)
class ReadMessageInternally:
    """The insurer's systems read the text of a customer's message (DOC-2)."""

    message_id: str


@dataclass(frozen=True, slots=True)
class OpenForPrint:
    """The letter channel fetches a document that goes by post (DOC-4)."""

    document_id: str


@dataclass(frozen=True, slots=True)
class ShowPreference:
    customer_id: str


@dataclass(frozen=True, slots=True)
class SetEmailInsteadOfLetter:
    customer_id: str
    on: bool


@dataclass(frozen=True, slots=True)
class RewrapDataKeys:
    """One batch of the master key rotation."""

    limit: int = 500
