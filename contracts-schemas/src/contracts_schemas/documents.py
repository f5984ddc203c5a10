"""Events of the documents context (DOC-1..DOC-5), topic `portal.documents.mailbox.v1`."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from contracts_schemas.base import Event, Identifier, Text


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


class EmailInsteadOfLetterActivated(MailboxEvent):
    pass


class EmailInsteadOfLetterDeactivated(MailboxEvent):
    pass


class SecureMessageAnswered(MailboxEvent):
    message_id: Identifier
