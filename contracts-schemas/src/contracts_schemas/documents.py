"""Events of the documents context (DOC-1..DOC-5), topic `portal.documents.mailbox.v1`, and
the upstream message that brings documents in (`upstream.documents.v1`)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from contracts_schemas.base import Event, Identifier, MultilineText, Text, UpstreamMessage


class DocumentDelivery(StrEnum):
    MAILBOX = "mailbox"
    POST = "post"


class MailboxEvent(Event):
    context: ClassVar[str] = "documents"

    customer_id: Identifier = Field(min_length=1, max_length=100)


class DocumentAvailable(MailboxEvent):
    """DOC-5: emitted once the document can be opened; the notice never carries content."""

    document_id: Identifier
    category: Text
    title: Text = Field(max_length=200)
    sensitive: bool = False
    delivery: DocumentDelivery = DocumentDelivery.MAILBOX
    #: DOC-4: the document must legally be in written form; it goes by post whatever the
    #: customer chose (`delivery` is then `post`).
    written_form: bool = False


class EmailInsteadOfLetterActivated(MailboxEvent):
    pass


class EmailInsteadOfLetterDeactivated(MailboxEvent):
    pass


class SecureMessageAnswered(MailboxEvent):
    message_id: Identifier


class SecureMessageSent(MailboxEvent):
    """DOC-2: the customer sent a secure message to the insurer. Metadata only: the text and
    the attachments are fetched from the documents service's internal API."""

    message_id: Identifier
    subject: Text = Field(max_length=200)
    policy_number: Identifier | None = Field(default=None, max_length=100)
    claim_number: Identifier | None = Field(default=None, max_length=100)
    attachment_count: int = Field(default=0, ge=0)


# Base64 of at most 700 KiB of content: the record stays below the broker's 1 MiB limit.
# Larger documents come through the documents service's internal HTTP API.
_MAX_UPSTREAM_CONTENT_BASE64 = 956_000


class DocumentIssuedUpstream(UpstreamMessage):
    """DOC-1: an upstream system (output management, claims handling) delivers a document
    for a customer's mailbox, on `upstream.documents.v1` or the internal HTTP API.
    `source_system` + `message_id` deduplicate. A document with `answers_message_id` is the
    insurer's answer to a secure message (DOC-2)."""

    customer_id: Identifier = Field(min_length=1, max_length=100)
    document_number: Identifier | None = Field(default=None, max_length=100)
    claim_number: Identifier | None = Field(default=None, max_length=100)
    answers_message_id: Identifier | None = Field(default=None, max_length=100)
    category: Identifier = Field(min_length=1, max_length=50)
    title: Text = Field(min_length=1, max_length=200)
    #: DOC-3: health benefit documents with diagnoses or treatments.
    sensitive: bool = False
    #: DOC-4: must legally be delivered in written form (always by post).
    written_form: bool = False
    filename: Text = Field(default="dokument.pdf", min_length=1, max_length=200)
    content_base64: str = Field(
        min_length=1, max_length=_MAX_UPSTREAM_CONTENT_BASE64, pattern=r"^[A-Za-z0-9+/]*={0,2}$"
    )
    note: MultilineText = Field(default="", max_length=2000)
