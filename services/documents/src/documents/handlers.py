"""The documents service's use cases (DOC-1..DOC-5), on a unit of work that is already in its
transaction. No SQL, no connections; the clock and the vault are injected by bootstrap.

A refusal raises `DocumentsError`, so the transaction rolls back and nothing is
half-stored (an upload refused, a message with one bad attachment: nothing of it stays).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar, assert_never

from contracts_schemas import documents as ev
from contracts_schemas import identity as idev
from contracts_schemas.base import Contract
from servicekit.clock import Clock
from servicekit.stream import Rejected
from servicekit.uploads import RejectedUpload, Upload, UploadPolicy, validate_upload

from documents import commands as c
from documents.domain.model import (
    SECOND_FACTOR_DETAIL,
    SENSITIVE_TITLE,
    Attachment,
    Category,
    Document,
    DocumentsError,
    Page,
    Preference,
    Reason,
    SecureMessage,
    StoredContent,
    document_id_for,
    listed_title,
    may_open,
    not_found,
    route,
)
from documents.ports import Vault
from documents.unit_of_work import DocumentsUnitOfWork, DuplicateDocument

E = TypeVar("E", bound=ev.MailboxEvent)

IdentityEvent = (
    idev.CustomerRegistered
    | idev.EmailVerified
    | idev.ContactDetailsChanged
    | idev.AccountCancelled
)
MESSAGE_TEXT_TYPE = "text/plain; charset=utf-8"
MAX_ATTACHMENTS = 10


@dataclass(frozen=True, slots=True)
class DocumentView:
    """A document as the customer's session may see it (DOC-3: greyed out = metadata only)."""

    document: Document
    title: str
    greyed_out: bool


@dataclass(frozen=True, slots=True)
class Content:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MessageWithText:
    message: SecureMessage
    text: str


@dataclass(frozen=True, slots=True)
class Delivered:
    document: Document
    duplicate: bool


@dataclass(frozen=True, slots=True)
class DocumentsConfig:
    customer_uploads: UploadPolicy = field(default_factory=UploadPolicy)
    upstream_documents: UploadPolicy = field(
        default_factory=lambda: UploadPolicy(max_bytes=20 * 1024 * 1024)
    )


def mailbox_stream(customer_id: str) -> str:
    return f"mailbox-{customer_id}"


@dataclass(frozen=True, slots=True)
class Documents:
    clock: Clock
    vault: Vault
    config: DocumentsConfig = field(default_factory=DocumentsConfig)

    # --- DOC-1 intake ------------------------------------------------------------------

    async def deliver(
        self, message: ev.DocumentIssuedUpstream, uow: DocumentsUnitOfWork
    ) -> Delivered:
        """DOC-1/DOC-4/DOC-5: store the document sealed, route it, then announce it - in one
        transaction, so DocumentAvailable is published only once the content is stored.
        The same upstream message again is the same document, announced once."""
        document_id = document_id_for(message.source_system, message.message_id)
        existing = await uow.documents.get(document_id)
        if existing is not None:
            return Delivered(existing, duplicate=True)
        try:
            category = Category(message.category)
        except ValueError:
            raise DocumentsError(
                Reason.INVALID, f"Unbekannte Kategorie: {message.category}", status=422
            ) from None
        upload = _checked(
            validate_upload(message.filename, _base64(message.content_base64),
                            self.config.upstream_documents)
        )  # fmt: skip
        now = self.clock.now()
        answered: SecureMessage | None = None
        if message.answers_message_id is not None:
            answered = await uow.messages.get(message.answers_message_id)
            if answered is None or answered.customer_id != message.customer_id:
                raise DocumentsError(
                    Reason.INVALID, "Die beantwortete Nachricht gibt es nicht.", status=422
                )
        preference = await uow.preferences.get(message.customer_id)
        delivery = route(preference, message.written_form)
        content = await self._store_upload(uow, f"document-{document_id}", upload)
        document = Document(
            document_id=document_id, customer_id=message.customer_id,
            source_system=message.source_system, source_message_id=message.message_id,
            category=category, title=message.title, policy_number=message.policy_number,
            claim_number=message.claim_number, answers_message_id=message.answers_message_id,
            sensitive=message.sensitive, written_form=message.written_form, delivery=delivery,
            content=content, issued_at=message.occurred_at, available_at=now,
        )  # fmt: skip
        try:
            await uow.documents.add(document)
        except DuplicateDocument:  # a concurrent delivery of the same message won
            raise DocumentsError(Reason.INVALID, "Dokument wird gerade zugestellt.") from None
        await self._emit(
            uow, message.customer_id, ev.DocumentAvailable,
            document_id=document_id, category=category.value,
            # DOC-5: a sensitive document's title never leaves the service.
            title=SENSITIVE_TITLE if message.sensitive else message.title,
            sensitive=message.sensitive, delivery=delivery, written_form=message.written_form,
        )  # fmt: skip
        if answered is not None:
            await uow.messages.save(
                replace(
                    answered,
                    answered_at=answered.answered_at or now,
                    answer_document_ids=(*answered.answer_document_ids, document_id),
                )
            )
            await self._emit(
                uow, message.customer_id, ev.SecureMessageAnswered, message_id=answered.message_id
            )
        return Delivered(document, duplicate=False)

    async def deliver_from_stream(
        self, messages: Sequence[Contract], uow: DocumentsUnitOfWork
    ) -> None:
        """Upstream documents from Kafka; one that can never be stored is dead-lettered."""
        for message in messages:
            if not isinstance(message, ev.DocumentIssuedUpstream):
                continue
            try:
                await self.deliver(message, uow)
            except DocumentsError as refused:
                raise Rejected(f"{refused.reason.value}: {refused.detail}") from None

    # --- DOC-1 mailbox -----------------------------------------------------------------

    async def list_documents(
        self, command: c.ListDocuments, uow: DocumentsUnitOfWork
    ) -> Page[DocumentView]:
        page = await uow.documents.of_customer(command.customer_id, command.where)
        views = tuple(_view(d, command.second_factor) for d in page.items)
        return Page(views, page.total, page.limit, page.offset)

    async def show_document(
        self, command: c.ShowDocument, uow: DocumentsUnitOfWork
    ) -> DocumentView:
        document = await self._own_document(uow, command.customer_id, command.document_id)
        return _view(document, command.second_factor)

    async def open_document(self, command: c.OpenDocument, uow: DocumentsUnitOfWork) -> Content:
        """DOC-1 download, DOC-3 only with the second factor for sensitive documents."""
        document = await self._own_document(uow, command.customer_id, command.document_id)
        if not may_open(document, command.second_factor):
            raise _second_factor_required()
        data = await self._open(uow, document.content)
        if document.read_at is None:
            await uow.documents.save(document.marked(self.clock.now()))
        return Content(document.content.filename, document.content.content_type, data)

    async def mark_document(
        self, command: c.MarkDocument, uow: DocumentsUnitOfWork
    ) -> DocumentView:
        document = await self._own_document(uow, command.customer_id, command.document_id)
        if command.read and document.read_at is None:
            document = document.marked(self.clock.now())
        elif not command.read:
            document = document.marked(None)
        await uow.documents.save(document)
        return _view(document, command.second_factor)

    async def open_for_print(self, command: c.OpenForPrint, uow: DocumentsUnitOfWork) -> Content:
        """DOC-4: the letter channel prints documents whose delivery is `post`."""
        document = await uow.documents.get(command.document_id)
        if document is None or document.delivery is not ev.DocumentDelivery.POST:
            raise not_found()
        data = await self._open(uow, document.content)
        return Content(document.content.filename, document.content.content_type, data)

    # --- DOC-2 secure messages ---------------------------------------------------------

    async def send_message(self, command: c.SendMessage, uow: DocumentsUnitOfWork) -> SecureMessage:
        """Every attachment is checked before anything is stored; one refused refuses all."""
        subject, text = command.subject.strip(), command.text.strip()
        if not subject or not text:
            raise DocumentsError(
                Reason.INVALID, "Bitte geben Sie einen Betreff und einen Text ein.", status=422
            )
        if len(command.files) > MAX_ATTACHMENTS:
            raise DocumentsError(
                Reason.INVALID, f"Höchstens {MAX_ATTACHMENTS} Anhänge je Nachricht.", status=422
            )
        uploads = [
            _checked(validate_upload(f.filename, f.content, self.config.customer_uploads))
            for f in command.files
        ]
        message_id = str(uuid.uuid4())
        body = await self._store(
            uow, f"message-{message_id}", "nachricht.txt", MESSAGE_TEXT_TYPE, text.encode()
        )
        attachments = []
        for upload in uploads:
            attachment_id = str(uuid.uuid4())
            content = await self._store_upload(uow, f"attachment-{attachment_id}", upload)
            attachments.append(Attachment(attachment_id, message_id, command.customer_id, content))
        message = SecureMessage(
            message_id=message_id, customer_id=command.customer_id, subject=subject, body=body,
            policy_number=command.policy_number, claim_number=command.claim_number,
            sent_at=self.clock.now(), attachments=tuple(attachments),
        )  # fmt: skip
        await uow.messages.add(message)
        await self._emit(
            uow, command.customer_id, ev.SecureMessageSent, message_id=message_id,
            subject=subject, policy_number=command.policy_number,
            claim_number=command.claim_number, attachment_count=len(attachments),
        )  # fmt: skip
        return message

    async def list_messages(
        self, command: c.ListMessages, uow: DocumentsUnitOfWork
    ) -> Page[SecureMessage]:
        return await uow.messages.of_customer(command.customer_id, command.limit, command.offset)

    async def show_message(
        self, command: c.ShowMessage, uow: DocumentsUnitOfWork
    ) -> MessageWithText:
        message = await uow.messages.get(command.message_id)
        if message is None or message.customer_id != command.customer_id:
            raise not_found()
        return MessageWithText(message, (await self._open(uow, message.body)).decode())

    async def read_message_internally(
        self, command: c.ReadMessageInternally, uow: DocumentsUnitOfWork
    ) -> MessageWithText:
        message = await uow.messages.get(command.message_id)
        if message is None:
            raise not_found()
        return MessageWithText(message, (await self._open(uow, message.body)).decode())

    async def open_attachment(self, command: c.OpenAttachment, uow: DocumentsUnitOfWork) -> Content:
        message = await uow.messages.get(command.message_id)
        if message is None or command.customer_id not in (None, message.customer_id):
            raise not_found()
        for attachment in message.attachments:
            if attachment.attachment_id == command.attachment_id:
                data = await self._open(uow, attachment.content)
                return Content(attachment.content.filename, attachment.content.content_type, data)
        raise not_found()

    # --- DOC-4 e-mail instead of letter ------------------------------------------------

    async def show_preference(
        self, command: c.ShowPreference, uow: DocumentsUnitOfWork
    ) -> Preference:
        return await uow.preferences.get(command.customer_id) or Preference(command.customer_id)

    async def set_email_instead_of_letter(
        self, command: c.SetEmailInsteadOfLetter, uow: DocumentsUnitOfWork
    ) -> Preference:
        """Turning it on needs a verified e-mail address; setting what is set changes
        nothing and emits nothing."""
        preference = await uow.preferences.get(command.customer_id) or Preference(
            command.customer_id
        )
        if command.on and preference.cancelled:
            raise DocumentsError(Reason.ACCOUNT_CANCELLED, "Ihr Konto ist gekündigt.", status=409)
        if command.on and preference.verified_email is None:
            raise DocumentsError(
                Reason.NO_VERIFIED_EMAIL,
                "Bitte bestätigen Sie zuerst Ihre E-Mail-Adresse; erst dann können wir Ihnen "
                "Dokumente per E-Mail statt per Brief ankündigen.",
                status=409,
            )
        if preference.email_instead_of_letter == command.on:
            return preference
        return await self._switch(uow, preference, command.on)

    async def record_identity(self, messages: Sequence[Contract], uow: DocumentsUnitOfWork) -> None:
        """Identity's events: which e-mail address is verified (DOC-4), and cancellation
        (ID-9: e-mail instead of letter ends). Other events are ignored."""
        for message in messages:
            if isinstance(
                message,
                idev.CustomerRegistered | idev.EmailVerified | idev.ContactDetailsChanged
                | idev.AccountCancelled,
            ):  # fmt: skip
                await self._apply_identity(message, uow)

    async def _apply_identity(self, event: IdentityEvent, uow: DocumentsUnitOfWork) -> None:
        preference = await uow.preferences.get(event.customer_id) or Preference(event.customer_id)
        match event:
            case idev.CustomerRegistered():
                if preference.email is None:
                    preference = replace(preference, email=event.email, email_verified=False)
            case idev.EmailVerified():
                preference = replace(preference, email=event.email, email_verified=True)
            case idev.ContactDetailsChanged():
                if event.email is not None and event.email != preference.email:
                    preference = replace(preference, email=event.email, email_verified=False)
            case idev.AccountCancelled():
                preference = replace(preference, cancelled=True)
                if preference.email_instead_of_letter:
                    await self._switch(uow, preference, on=False)
                    return
            case _:
                assert_never(event)
        await uow.preferences.save(replace(preference, changed_at=event.occurred_at))

    async def _switch(
        self, uow: DocumentsUnitOfWork, preference: Preference, on: bool
    ) -> Preference:
        now = self.clock.now()
        switched = replace(preference, email_instead_of_letter=on, changed_at=now)
        await uow.preferences.save(switched)
        kind = ev.EmailInsteadOfLetterActivated if on else ev.EmailInsteadOfLetterDeactivated
        await self._emit(uow, preference.customer_id, kind)
        return switched

    # --- DOC-3 master key rotation -----------------------------------------------------

    async def rewrap_data_keys(self, command: c.RewrapDataKeys, uow: DocumentsUnitOfWork) -> int:
        """One batch of the rotation: data keys under an older master key are wrapped by
        the current one. Returns how many; 0 when the rotation is complete."""
        keys = await uow.contents.keys_not_under(self.vault.current_key_id, command.limit)
        for key in keys:
            await uow.contents.save_key(self.vault.rewrap(key))
        return len(keys)

    # --- helpers -----------------------------------------------------------------------

    async def _own_document(
        self, uow: DocumentsUnitOfWork, customer_id: str, document_id: str
    ) -> Document:
        document = await uow.documents.get(document_id)
        if document is None or document.customer_id != customer_id:
            raise not_found()  # another customer's document does not exist for this one
        return document

    async def _store_upload(
        self, uow: DocumentsUnitOfWork, blob_id: str, upload: Upload
    ) -> StoredContent:
        return await self._store(
            uow, blob_id, upload.filename, upload.content_type.value, upload.content
        )

    async def _store(
        self, uow: DocumentsUnitOfWork, blob_id: str, filename: str, content_type: str,
        data: bytes,
    ) -> StoredContent:  # fmt: skip
        """DOC-3: everything stored is sealed, sensitive or not."""
        await uow.contents.put(self.vault.seal(blob_id, content_type, data))
        return StoredContent(blob_id, content_type, len(data), filename)

    async def _open(self, uow: DocumentsUnitOfWork, content: StoredContent) -> bytes:
        sealed = await uow.contents.get(content.blob_id)
        if sealed is None:
            raise not_found()
        return self.vault.open(sealed)

    async def _emit(
        self, uow: DocumentsUnitOfWork, customer_id: str, kind: type[E], **fields: object
    ) -> E:
        stream = mailbox_stream(customer_id)
        version = await uow.events.stream_version(stream)
        event = kind.model_validate(
            {
                "event_id": uuid.uuid4(),
                "aggregate_id": stream,
                "aggregate_version": version + 1,
                "occurred_at": self.clock.now(),
                "customer_ids": (customer_id,),
                "customer_id": customer_id,
                **fields,
            }
        )
        await uow.events.append(stream, version, [event])
        return event


def _view(document: Document, second_factor: bool) -> DocumentView:
    return DocumentView(
        document, listed_title(document, second_factor), not may_open(document, second_factor)
    )


def _second_factor_required() -> DocumentsError:
    return DocumentsError(
        Reason.SECOND_FACTOR_REQUIRED, SECOND_FACTOR_DETAIL, status=403,
        problem="second-factor-required",
    )  # fmt: skip


def _checked(result: Upload | RejectedUpload) -> Upload:
    if isinstance(result, RejectedUpload):
        raise DocumentsError(
            Reason.UPLOAD_REFUSED, result.detail, status=result.status,
            problem=f"upload-{result.reason.value}",
        )  # fmt: skip
    return result


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DocumentsError(
            Reason.INVALID, "Der Inhalt ist kein gültiges Base64.", status=422
        ) from None


__all__ = ["Content", "Delivered", "DocumentView", "Documents", "DocumentsConfig"]
