"""The documents service's PostgreSQL repositories, on the unit of work's connection. All SQL
of the service is here. Sealed bytes live in servicekit's blob table (`PostgresBlobStore`),
their wrapped data keys beside them in `data_keys`."""

from __future__ import annotations

from typing import Any

import asyncpg
from contracts_schemas.documents import DocumentDelivery
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.postgres import PostgresUnitOfWork
from servicekit.uploads import Blob, PostgresBlobStore

from documents.domain.model import (
    Attachment,
    Category,
    Document,
    DocumentFilter,
    Page,
    Preference,
    SecureMessage,
    StoredContent,
)
from documents.ports import DataKey, SealedBlob
from documents.unit_of_work import DuplicateDocument


class PostgresContents:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._blobs = PostgresBlobStore(conn)

    async def put(self, sealed: SealedBlob) -> None:
        await self._blobs.put(Blob(sealed.blob_id, sealed.content_type, sealed.ciphertext))
        await self._conn.execute(
            "INSERT INTO data_keys (blob_id, key_id, wrapped_key) VALUES ($1, $2, $3)"
            " ON CONFLICT (blob_id) DO UPDATE SET key_id = $2, wrapped_key = $3",
            sealed.blob_id,
            sealed.key.key_id,
            sealed.key.wrapped_key,
        )

    async def get(self, blob_id: str) -> SealedBlob | None:
        row = await self._conn.fetchrow(
            "SELECT b.content_type, b.content, k.key_id, k.wrapped_key"
            " FROM blobs b JOIN data_keys k USING (blob_id) WHERE b.blob_id = $1",
            blob_id,
        )
        if row is None:
            return None
        key = DataKey(blob_id, row["key_id"], bytes(row["wrapped_key"]))
        return SealedBlob(blob_id, row["content_type"], bytes(row["content"]), key)

    async def keys_not_under(self, key_id: str, limit: int) -> list[DataKey]:
        rows = await self._conn.fetch(
            "SELECT blob_id, key_id, wrapped_key FROM data_keys WHERE key_id <> $1"
            " ORDER BY blob_id LIMIT $2 FOR UPDATE SKIP LOCKED",
            key_id,
            limit,
        )
        return [DataKey(r["blob_id"], r["key_id"], bytes(r["wrapped_key"])) for r in rows]

    async def save_key(self, key: DataKey) -> None:
        await self._conn.execute(
            "UPDATE data_keys SET key_id = $2, wrapped_key = $3 WHERE blob_id = $1",
            key.blob_id,
            key.key_id,
            key.wrapped_key,
        )


_DOCUMENT_COLUMNS = (
    "document_id, customer_id, source_system, source_message_id, category, title,"
    " policy_number, claim_number, answers_message_id, sensitive, written_form, delivery,"
    " blob_id, content_type, size, filename, issued_at, available_at, read_at"
)


def _document(row: asyncpg.Record) -> Document:
    return Document(
        document_id=row["document_id"], customer_id=row["customer_id"],
        source_system=row["source_system"], source_message_id=row["source_message_id"],
        category=Category(row["category"]), title=row["title"],
        policy_number=row["policy_number"], claim_number=row["claim_number"],
        answers_message_id=row["answers_message_id"], sensitive=row["sensitive"],
        written_form=row["written_form"], delivery=DocumentDelivery(row["delivery"]),
        content=StoredContent(row["blob_id"], row["content_type"], row["size"], row["filename"]),
        issued_at=row["issued_at"], available_at=row["available_at"], read_at=row["read_at"],
    )  # fmt: skip


class PostgresDocuments:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, d: Document) -> None:
        try:
            await self._conn.execute(
                f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) VALUES"  # noqa: S608 - constant
                " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
                " $18, $19)",
                d.document_id, d.customer_id, d.source_system, d.source_message_id,
                d.category.value, d.title, d.policy_number, d.claim_number,
                d.answers_message_id, d.sensitive, d.written_form, d.delivery.value,
                d.content.blob_id, d.content.content_type, d.content.size, d.content.filename,
                d.issued_at, d.available_at, d.read_at,
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise DuplicateDocument(d.document_id) from None

    async def get(self, document_id: str) -> Document | None:
        row = await self._conn.fetchrow(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE document_id = $1",  # noqa: S608
            document_id,
        )
        return None if row is None else _document(row)

    async def of_customer(self, customer_id: str, where: DocumentFilter) -> Page[Document]:
        conditions = ["customer_id = $1"]
        args: list[Any] = [customer_id]
        for column, value in (
            ("category", where.category.value if where.category else None),
            ("policy_number", where.policy_number),
            ("claim_number", where.claim_number),
        ):
            if value is not None:
                args.append(value)
                conditions.append(f"{column} = ${len(args)}")
        if where.unread is not None:
            conditions.append("read_at IS NULL" if where.unread else "read_at IS NOT NULL")
        clause = " AND ".join(conditions)
        total = await self._conn.fetchval(
            f"SELECT count(*) FROM documents WHERE {clause}",  # noqa: S608 - fixed columns
            *args,
        )
        rows = await self._conn.fetch(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE {clause}"  # noqa: S608
            f" ORDER BY available_at DESC, document_id DESC"
            f" LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
            *args,
            where.limit,
            where.offset,
        )
        return Page(tuple(_document(r) for r in rows), total, where.limit, where.offset)

    async def save(self, document: Document) -> None:
        await self._conn.execute(
            "UPDATE documents SET read_at = $2 WHERE document_id = $1",
            document.document_id,
            document.read_at,
        )


class PostgresMessages:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, m: SecureMessage) -> None:
        await self._conn.execute(
            "INSERT INTO messages (message_id, customer_id, subject, body_blob_id, body_size,"
            " policy_number, claim_number, sent_at, answered_at, answer_document_ids)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            m.message_id, m.customer_id, m.subject, m.body.blob_id, m.body.size,
            m.policy_number, m.claim_number, m.sent_at, m.answered_at,
            list(m.answer_document_ids),
        )  # fmt: skip
        await self._conn.executemany(
            "INSERT INTO attachments (attachment_id, message_id, customer_id, position,"
            " blob_id, content_type, size, filename) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [
                (a.attachment_id, a.message_id, a.customer_id, position, a.content.blob_id,
                 a.content.content_type, a.content.size, a.content.filename)
                for position, a in enumerate(m.attachments)
            ],
        )  # fmt: skip

    async def get(self, message_id: str) -> SecureMessage | None:
        row = await self._conn.fetchrow("SELECT * FROM messages WHERE message_id = $1", message_id)
        if row is None:
            return None
        return (await self._with_attachments([row]))[0]

    async def of_customer(self, customer_id: str, limit: int, offset: int) -> Page[SecureMessage]:
        total = await self._conn.fetchval(
            "SELECT count(*) FROM messages WHERE customer_id = $1", customer_id
        )
        rows = await self._conn.fetch(
            "SELECT * FROM messages WHERE customer_id = $1"
            " ORDER BY sent_at DESC, message_id DESC LIMIT $2 OFFSET $3",
            customer_id,
            limit,
            offset,
        )
        return Page(tuple(await self._with_attachments(rows)), total, limit, offset)

    async def save(self, message: SecureMessage) -> None:
        await self._conn.execute(
            "UPDATE messages SET answered_at = $2, answer_document_ids = $3 WHERE message_id = $1",
            message.message_id,
            message.answered_at,
            list(message.answer_document_ids),
        )

    async def _with_attachments(self, rows: list[asyncpg.Record]) -> list[SecureMessage]:
        ids = [r["message_id"] for r in rows]
        attachments: dict[str, list[Attachment]] = {i: [] for i in ids}
        for a in await self._conn.fetch(
            "SELECT * FROM attachments WHERE message_id = ANY($1::text[])"
            " ORDER BY message_id, position",
            ids,
        ):
            attachments[a["message_id"]].append(
                Attachment(
                    a["attachment_id"],
                    a["message_id"],
                    a["customer_id"],
                    StoredContent(a["blob_id"], a["content_type"], a["size"], a["filename"]),
                )
            )
        return [
            SecureMessage(
                message_id=r["message_id"],
                customer_id=r["customer_id"],
                subject=r["subject"],
                body=StoredContent(
                    r["body_blob_id"], "text/plain; charset=utf-8", r["body_size"], "nachricht.txt"
                ),
                policy_number=r["policy_number"],
                claim_number=r["claim_number"],
                sent_at=r["sent_at"],
                answered_at=r["answered_at"],
                answer_document_ids=tuple(r["answer_document_ids"]),
                attachments=tuple(attachments[r["message_id"]]),
            )
            for r in rows
        ]


class PostgresPreferences:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def get(self, customer_id: str) -> Preference | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM preferences WHERE customer_id = $1 FOR UPDATE", customer_id
        )
        if row is None:
            return None
        return Preference(
            customer_id=row["customer_id"], email=row["email"],
            email_verified=row["email_verified"],
            email_instead_of_letter=row["email_instead_of_letter"], cancelled=row["cancelled"],
            changed_at=row["changed_at"],
        )  # fmt: skip

    async def save(self, p: Preference) -> None:
        await self._conn.execute(
            "INSERT INTO preferences (customer_id, email, email_verified,"
            " email_instead_of_letter, cancelled, changed_at) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (customer_id) DO UPDATE SET email = $2, email_verified = $3,"
            " email_instead_of_letter = $4, cancelled = $5, changed_at = $6",
            p.customer_id, p.email, p.email_verified, p.email_instead_of_letter, p.cancelled,
            p.changed_at,
        )  # fmt: skip


class PostgresDocumentsUnitOfWork(PostgresUnitOfWork):
    def __init__(self, conn: Connection, store: EventStore) -> None:
        super().__init__(conn, store)
        self.contents = PostgresContents(conn)
        self.documents = PostgresDocuments(conn)
        self.messages = PostgresMessages(conn)
        self.preferences = PostgresPreferences(conn)
