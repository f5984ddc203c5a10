"""The documents service's unit of work: servicekit's event log and inbox plus its own
repositories. Handlers see only these protocols; adapters/postgres.py and
adapters/memory.py implement them with the same semantics."""

from __future__ import annotations

from typing import Protocol

from servicekit.unit_of_work import UnitOfWork

from documents.domain.model import Document, DocumentFilter, Page, Preference, SecureMessage
from documents.ports import DataKey, SealedBlob


class Contents(Protocol):
    """Sealed bytes (servicekit's blob store) and their wrapped data keys."""

    async def put(self, sealed: SealedBlob) -> None: ...

    async def get(self, blob_id: str) -> SealedBlob | None: ...

    async def keys_not_under(self, key_id: str, limit: int) -> list[DataKey]:
        """Data keys wrapped by another master key than `key_id`, locked, at most `limit`."""
        ...

    async def save_key(self, key: DataKey) -> None: ...


class Documents(Protocol):
    async def add(self, document: Document) -> None:
        """Raises DuplicateDocument when the id exists (same upstream message again)."""
        ...

    async def get(self, document_id: str) -> Document | None: ...

    async def of_customer(self, customer_id: str, where: DocumentFilter) -> Page[Document]:
        """Newest first (then by id), filtered, one page."""
        ...

    async def save(self, document: Document) -> None:
        """Stores the read mark."""
        ...


class Messages(Protocol):
    async def add(self, message: SecureMessage) -> None:
        """The message and its attachments."""
        ...

    async def get(self, message_id: str) -> SecureMessage | None: ...

    async def of_customer(self, customer_id: str, limit: int, offset: int) -> Page[SecureMessage]:
        """Newest first."""
        ...

    async def save(self, message: SecureMessage) -> None:
        """Stores the answer mark (`answered_at`, `answer_document_ids`)."""
        ...


class Preferences(Protocol):
    async def get(self, customer_id: str) -> Preference | None:
        """Locked for this transaction."""
        ...

    async def save(self, preference: Preference) -> None: ...


class DuplicateDocument(Exception):
    """A document with this id is stored already."""


class DocumentsUnitOfWork(UnitOfWork, Protocol):
    @property
    def contents(self) -> Contents: ...

    @property
    def documents(self) -> Documents: ...

    @property
    def messages(self) -> Messages: ...

    @property
    def preferences(self) -> Preferences: ...
