"""The documents service's HTTP API: the customer's mailbox under /documents, secure
messages under /messages, and internal routes for upstream systems and the letter channel
under /internal (service credentials, `Operation.DOCUMENTS`).

Each route parses, makes ONE handler call through `service.transactions.execute`, and maps
the result. Every customer route is scoped to the token's customer: another customer's
document, message or attachment is a 404, exactly like one that does not exist."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Protocol, TypeVar

import httpx
from contracts_schemas.base import NO_CONTROL_CHARACTERS as ONE_LINE
from contracts_schemas.base import NO_CONTROL_CHARACTERS_BUT_LINES as LINES
from contracts_schemas.base import Identifier, MultilineText, Text
from contracts_schemas.documents import DocumentDelivery, DocumentIssuedUpstream
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from servicekit.asyncapi import document, mount
from servicekit.http import CurrentCustomer, Problem, problems, requires
from servicekit.permissions import Operation
from servicekit.runtime import Runtime
from servicekit.unit_of_work import Transactions

from documents import commands as c
from documents.adapters.postgres import PostgresDocumentsUnitOfWork
from documents.config import DocumentsSettings
from documents.domain.model import (
    Category,
    DocumentFilter,
    DocumentsError,
    Preference,
    Reason,
    SecureMessage,
)
from documents.entrypoints.stream import STREAM
from documents.handlers import Content, Documents, DocumentView, MessageWithText

C = TypeVar("C")
T = TypeVar("T")

_STATUS = {
    Reason.NOT_FOUND: 404, Reason.SECOND_FACTOR_REQUIRED: 403, Reason.UPLOAD_REFUSED: 422,
    Reason.NO_VERIFIED_EMAIL: 409, Reason.ACCOUNT_CANCELLED: 409, Reason.INVALID: 422,
}  # fmt: skip
_TITLES = {
    Reason.NOT_FOUND: "Not found", Reason.SECOND_FACTOR_REQUIRED: "Second factor required",
    Reason.UPLOAD_REFUSED: "Upload refused", Reason.NO_VERIFIED_EMAIL: "No verified e-mail",
    Reason.ACCOUNT_CANCELLED: "Account cancelled", Reason.INVALID: "Invalid request",
}  # fmt: skip
SystemCaller = Annotated[str, Depends(requires(Operation.DOCUMENTS))]
PrintingSystem = Annotated[str, Depends(requires(Operation.PRINTS))]


class DocumentsService(Protocol):
    runtime: Runtime
    documents: Documents
    transactions: Transactions[PostgresDocumentsUnitOfWork]
    settings: DocumentsSettings
    http: httpx.AsyncClient


class DocumentOut(BaseModel):
    document_id: str
    category: Category
    title: str = Field(description="DOC-3: a neutral title while greyed out")
    greyed_out: bool = Field(description="DOC-3: sensitive, session without second factor")
    sensitive: bool
    can_open: bool
    policy_number: str | None
    claim_number: str | None
    answers_message_id: str | None
    delivery: DocumentDelivery
    written_form: bool
    content_type: str
    size: int
    issued_at: datetime
    available_at: datetime
    read: bool
    read_at: datetime | None


class DocumentPageOut(BaseModel):
    items: list[DocumentOut]
    total: int
    limit: int
    offset: int


class AttachmentOut(BaseModel):
    attachment_id: str
    filename: str
    content_type: str
    size: int


class MessageOut(BaseModel):
    message_id: str
    subject: str
    policy_number: str | None
    claim_number: str | None
    sent_at: datetime
    answered: bool
    answered_at: datetime | None
    answer_document_ids: list[str]
    attachments: list[AttachmentOut]


class MessageWithTextOut(MessageOut):
    text: str
    customer_id: str | None = None


class MessagePageOut(BaseModel):
    items: list[MessageOut]
    total: int
    limit: int
    offset: int


class PreferenceOut(BaseModel):
    email_instead_of_letter: bool
    verified_email: bool = Field(description="DOC-4: needed to turn it on")


class PreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email_instead_of_letter: bool


class DocumentIn(BaseModel):
    """An upstream document (DOC-1); the calling system is its `source_system`. The same
    fields as `DocumentIssuedUpstream`, but content up to the configured size (Kafka
    records stay below 1 MiB)."""

    model_config = ConfigDict(extra="forbid")
    message_id: Identifier = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime
    policy_number: Identifier = Field(min_length=1, max_length=100)
    customer_id: Identifier = Field(min_length=1, max_length=100)
    document_number: Identifier | None = Field(default=None, max_length=100)
    claim_number: Identifier | None = Field(default=None, max_length=100)
    answers_message_id: Identifier | None = Field(default=None, max_length=100)
    category: Category
    title: Text = Field(min_length=1, max_length=200)
    sensitive: bool = False
    written_form: bool = False
    filename: Text = Field(default="dokument.pdf", min_length=1, max_length=200)
    content_base64: str = Field(
        min_length=1, max_length=30_000_000, pattern=r"^[A-Za-z0-9+/]*={0,2}$"
    )
    note: MultilineText = Field(default="", max_length=2000)


class DeliveredOut(BaseModel):
    document_id: str
    delivery: DocumentDelivery
    duplicate: bool


def _document_out(view: DocumentView) -> DocumentOut:
    d = view.document
    return DocumentOut(
        document_id=d.document_id, category=d.category, title=view.title,
        greyed_out=view.greyed_out, sensitive=d.sensitive, can_open=not view.greyed_out,
        policy_number=d.policy_number, claim_number=d.claim_number,
        answers_message_id=d.answers_message_id, delivery=d.delivery,
        written_form=d.written_form, content_type=d.content.content_type, size=d.content.size,
        issued_at=d.issued_at, available_at=d.available_at, read=d.read_at is not None,
        read_at=d.read_at,
    )  # fmt: skip


def _message_out(m: SecureMessage) -> MessageOut:
    return MessageOut(
        message_id=m.message_id, subject=m.subject, policy_number=m.policy_number,
        claim_number=m.claim_number, sent_at=m.sent_at, answered=m.answered_at is not None,
        answered_at=m.answered_at, answer_document_ids=list(m.answer_document_ids),
        attachments=[
            AttachmentOut(attachment_id=a.attachment_id, filename=a.content.filename,
                          content_type=a.content.content_type, size=a.content.size)
            for a in m.attachments
        ],
    )  # fmt: skip


def _with_text(found: MessageWithText, customer_id: str | None = None) -> MessageWithTextOut:
    return MessageWithTextOut(
        **_message_out(found.message).model_dump(), text=found.text, customer_id=customer_id
    )


def _download(content: Content) -> Response:
    filename = content.filename.encode("ascii", "replace").decode().replace('"', "")
    return Response(
        content.data,
        media_type=content.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


def _problem(error: DocumentsError) -> Problem:
    return Problem(
        error.status or _STATUS[error.reason], _TITLES[error.reason], error.detail,
        type_=f"urn:portal:problem:{error.problem}",
    )  # fmt: skip


_BINARY = {"content": {"application/octet-stream": {}}, "description": "The file"}


def create_app(service: DocumentsService) -> FastAPI:
    app = service.runtime.http_app(service, lambda app: None, customer_tokens=service.http)
    h = service.documents
    max_upload = service.settings.max_upload_bytes

    async def run(
        handler: Callable[[C, PostgresDocumentsUnitOfWork], Awaitable[T]], command: C
    ) -> T:
        try:
            return await service.transactions.execute(handler, command)
        except DocumentsError as error:
            raise _problem(error) from None

    customer = APIRouter(tags=["documents"])

    @customer.get("/documents/delivery-preference", response_model=PreferenceOut)
    async def delivery_preference(principal: CurrentCustomer) -> PreferenceOut:
        """DOC-4: e-mail instead of letter, and whether a verified address is known."""
        found: Preference = await run(h.show_preference, c.ShowPreference(principal.customer_id))
        return PreferenceOut(
            email_instead_of_letter=found.email_instead_of_letter,
            verified_email=found.verified_email is not None,
        )

    @customer.put(
        "/documents/delivery-preference", response_model=PreferenceOut, responses=problems(409)
    )
    async def set_delivery_preference(
        body: PreferenceIn, principal: CurrentCustomer
    ) -> PreferenceOut:
        """DOC-4: on needs a verified e-mail address (409 otherwise); emits
        EmailInsteadOfLetterActivated / ...Deactivated when it changes."""
        found = await run(
            h.set_email_instead_of_letter,
            c.SetEmailInsteadOfLetter(principal.customer_id, body.email_instead_of_letter),
        )
        return PreferenceOut(
            email_instead_of_letter=found.email_instead_of_letter,
            verified_email=found.verified_email is not None,
        )

    @customer.get("/documents", response_model=DocumentPageOut)
    async def list_documents(
        principal: CurrentCustomer,
        category: Category | None = None,
        unread: bool | None = None,
        policy_number: Annotated[str | None, Query(max_length=100)] = None,
        claim_number: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> DocumentPageOut:
        """DOC-1: mailbox and archive, newest first; DOC-3: sensitive ones greyed out."""
        where = DocumentFilter(category, unread, policy_number, claim_number, limit, offset)
        page = await run(
            h.list_documents,
            c.ListDocuments(principal.customer_id, principal.has_second_factor, where),
        )
        return DocumentPageOut(
            items=[_document_out(v) for v in page.items], total=page.total, limit=page.limit,
            offset=page.offset,
        )  # fmt: skip

    @customer.get("/documents/{document_id}", response_model=DocumentOut, responses=problems(404))
    async def show_document(document_id: str, principal: CurrentCustomer) -> DocumentOut:
        view = await run(
            h.show_document,
            c.ShowDocument(principal.customer_id, document_id, principal.has_second_factor),
        )
        return _document_out(view)

    @customer.get(
        "/documents/{document_id}/content",
        responses={200: _BINARY, **problems(403, 404)},
        response_class=Response,
    )
    async def download_document(document_id: str, principal: CurrentCustomer) -> Response:
        """DOC-1 download (marks it read); DOC-3: 403 for a sensitive document unless the
        session used the second factor - the problem says how to turn 2FA on."""
        content = await run(
            h.open_document,
            c.OpenDocument(principal.customer_id, document_id, principal.has_second_factor),
        )
        return _download(content)

    @customer.post(
        "/documents/{document_id}/read", response_model=DocumentOut, responses=problems(404)
    )
    async def mark_read(document_id: str, principal: CurrentCustomer) -> DocumentOut:
        return _document_out(await run(h.mark_document, c.MarkDocument(
            principal.customer_id, document_id, True, principal.has_second_factor)))  # fmt: skip

    @customer.post(
        "/documents/{document_id}/unread", response_model=DocumentOut, responses=problems(404)
    )
    async def mark_unread(document_id: str, principal: CurrentCustomer) -> DocumentOut:
        return _document_out(await run(h.mark_document, c.MarkDocument(
            principal.customer_id, document_id, False, principal.has_second_factor)))  # fmt: skip

    @customer.post(
        "/messages", status_code=201, response_model=MessageOut,
        responses=problems(413, 415),
    )  # fmt: skip
    async def send_message(
        principal: CurrentCustomer,
        subject: Annotated[str, Form(min_length=1, max_length=200, pattern=ONE_LINE)],
        text: Annotated[str, Form(min_length=1, max_length=20_000, pattern=LINES)],
        policy_number: Annotated[str | None, Form(max_length=100, pattern=ONE_LINE)] = None,
        claim_number: Annotated[str | None, Form(max_length=100, pattern=ONE_LINE)] = None,
        files: Annotated[list[UploadFile] | None, File()] = None,
    ) -> MessageOut:
        """DOC-2: a secure message with attachments (PDF, JPEG, PNG, HEIC; each judged by
        its bytes). One refused attachment refuses the message; nothing is stored."""
        incoming = []
        for upload in files or ():
            # At most one byte past the limit is read: enough to refuse it as too large.
            incoming.append(c.IncomingFile(upload.filename, await upload.read(max_upload + 1)))
        message = await run(
            h.send_message,
            c.SendMessage(principal.customer_id, subject, text, policy_number, claim_number,
                          tuple(incoming)),
        )  # fmt: skip
        return _message_out(message)

    @customer.get("/messages", response_model=MessagePageOut)
    async def list_messages(
        principal: CurrentCustomer,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> MessagePageOut:
        page = await run(h.list_messages, c.ListMessages(principal.customer_id, limit, offset))
        return MessagePageOut(
            items=[_message_out(m) for m in page.items], total=page.total, limit=page.limit,
            offset=page.offset,
        )  # fmt: skip

    @customer.get(
        "/messages/{message_id}", response_model=MessageWithTextOut, responses=problems(404)
    )
    async def show_message(message_id: str, principal: CurrentCustomer) -> MessageWithTextOut:
        found = await run(h.show_message, c.ShowMessage(principal.customer_id, message_id))
        return _with_text(found)

    @customer.get(
        "/messages/{message_id}/attachments/{attachment_id}",
        responses={200: _BINARY, **problems(404)},
        response_class=Response,
    )
    async def download_attachment(
        message_id: str, attachment_id: str, principal: CurrentCustomer
    ) -> Response:
        content = await run(
            h.open_attachment, c.OpenAttachment(principal.customer_id, message_id, attachment_id)
        )
        return _download(content)

    internal = APIRouter(tags=["internal"], prefix="/internal")

    @internal.post(
        "/documents", status_code=201, response_model=DeliveredOut,
        responses=problems(413, 415),
    )  # fmt: skip
    async def deliver_document(body: DocumentIn, system: SystemCaller) -> DeliveredOut:
        """DOC-1: an upstream system delivers a document (idempotent per system and
        `message_id`); content as base64."""
        # Validated by DocumentIn with the contract's field types; only the content may be
        # larger than a Kafka record's.
        message = DocumentIssuedUpstream.model_construct(
            source_system=system, **body.model_dump(exclude={"category"}),
            category=body.category.value,
        )  # fmt: skip
        delivered = await run(h.deliver, message)
        return DeliveredOut(
            document_id=delivered.document.document_id,
            delivery=delivered.document.delivery,
            duplicate=delivered.duplicate,
        )

    @internal.get(
        "/documents/{document_id}/print",
        responses={200: _BINARY, **problems(404)},
        response_class=Response,
    )
    async def print_document(document_id: str, system: PrintingSystem) -> Response:
        """DOC-4: the letter channel fetches a document whose delivery is `post`."""
        return _download(await run(h.open_for_print, c.OpenForPrint(document_id)))

    @internal.get(
        "/messages/{message_id}", response_model=MessageWithTextOut, responses=problems(404)
    )
    async def read_message(message_id: str, system: SystemCaller) -> MessageWithTextOut:
        """DOC-2: the insurer's systems read a customer's message."""
        found = await run(h.read_message_internally, c.ReadMessageInternally(message_id))
        return _with_text(found, found.message.customer_id)

    @internal.get(
        "/messages/{message_id}/attachments/{attachment_id}",
        responses={200: _BINARY, **problems(404)},
        response_class=Response,
    )
    async def read_attachment(
        message_id: str, attachment_id: str, system: SystemCaller
    ) -> Response:
        return _download(
            await run(h.open_attachment, c.OpenAttachment(None, message_id, attachment_id))
        )

    app.include_router(customer)
    app.include_router(internal)
    mount(app, document(STREAM))  # /asyncapi and /asyncapi.json
    return app


def content_base64(data: bytes) -> str:
    """For callers of `POST /internal/documents`."""
    return base64.b64encode(data).decode()


__all__ = ["content_base64", "create_app"]
