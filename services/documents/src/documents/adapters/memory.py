"""In-memory twins of the PostgreSQL repositories, for unit tests of the handlers. Same
semantics: unique document ids, newest first with the same filters, sealed bytes kept in
servicekit's in-memory blob store."""

from __future__ import annotations

from dataclasses import replace

from servicekit.memory import InMemoryUnitOfWork
from servicekit.uploads import Blob, InMemoryBlobStore

from documents.domain.model import Document, DocumentFilter, Page, Preference, SecureMessage
from documents.ports import DataKey, SealedBlob
from documents.unit_of_work import DuplicateDocument


class InMemoryContents:
    def __init__(self) -> None:
        self.blobs = InMemoryBlobStore()
        self.keys: dict[str, DataKey] = {}

    async def put(self, sealed: SealedBlob) -> None:
        await self.blobs.put(Blob(sealed.blob_id, sealed.content_type, sealed.ciphertext))
        self.keys[sealed.blob_id] = sealed.key

    async def get(self, blob_id: str) -> SealedBlob | None:
        blob = await self.blobs.get(blob_id)
        key = self.keys.get(blob_id)
        if blob is None or key is None:
            return None
        return SealedBlob(blob_id, blob.content_type, blob.content, key)

    async def keys_not_under(self, key_id: str, limit: int) -> list[DataKey]:
        others = [k for k in self.keys.values() if k.key_id != key_id]
        return sorted(others, key=lambda k: k.blob_id)[:limit]

    async def save_key(self, key: DataKey) -> None:
        self.keys[key.blob_id] = key


class InMemoryDocuments:
    def __init__(self) -> None:
        self.rows: dict[str, Document] = {}

    async def add(self, document: Document) -> None:
        if document.document_id in self.rows:
            raise DuplicateDocument(document.document_id)
        self.rows[document.document_id] = document

    async def get(self, document_id: str) -> Document | None:
        return self.rows.get(document_id)

    async def of_customer(self, customer_id: str, where: DocumentFilter) -> Page[Document]:
        found = [
            d
            for d in self.rows.values()
            if d.customer_id == customer_id
            and (where.category is None or d.category is where.category)
            and (where.unread is None or (d.read_at is None) == where.unread)
            and (where.policy_number is None or d.policy_number == where.policy_number)
            and (where.claim_number is None or d.claim_number == where.claim_number)
        ]
        found.sort(key=lambda d: d.document_id, reverse=True)
        found.sort(key=lambda d: d.available_at, reverse=True)
        items = tuple(found[where.offset : where.offset + where.limit])
        return Page(items, len(found), where.limit, where.offset)

    async def save(self, document: Document) -> None:
        stored = self.rows[document.document_id]
        self.rows[document.document_id] = replace(stored, read_at=document.read_at)


class InMemoryMessages:
    def __init__(self) -> None:
        self.rows: dict[str, SecureMessage] = {}

    async def add(self, message: SecureMessage) -> None:
        if message.message_id in self.rows:
            raise ValueError(f"message {message.message_id} exists")
        self.rows[message.message_id] = message

    async def get(self, message_id: str) -> SecureMessage | None:
        return self.rows.get(message_id)

    async def of_customer(self, customer_id: str, limit: int, offset: int) -> Page[SecureMessage]:
        found = [m for m in self.rows.values() if m.customer_id == customer_id]
        found.sort(key=lambda m: m.message_id, reverse=True)
        found.sort(key=lambda m: m.sent_at, reverse=True)
        return Page(tuple(found[offset : offset + limit]), len(found), limit, offset)

    async def save(self, message: SecureMessage) -> None:
        stored = self.rows[message.message_id]
        self.rows[message.message_id] = replace(
            stored,
            answered_at=message.answered_at,
            answer_document_ids=message.answer_document_ids,
        )


class InMemoryPreferences:
    def __init__(self) -> None:
        self.rows: dict[str, Preference] = {}

    async def get(self, customer_id: str) -> Preference | None:
        return self.rows.get(customer_id)

    async def save(self, preference: Preference) -> None:
        self.rows[preference.customer_id] = preference


class InMemoryDocumentsUnitOfWork(InMemoryUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.contents = InMemoryContents()
        self.documents = InMemoryDocuments()
        self.messages = InMemoryMessages()
        self.preferences = InMemoryPreferences()
