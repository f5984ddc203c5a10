"""The one place where the documents service's adapters are wired to its handlers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from servicekit.clock import Clock
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.runner import Loop
from servicekit.runtime import Runtime
from servicekit.stream import EventStream
from servicekit.tracing import traced_client
from servicekit.unit_of_work import Transactions
from servicekit.uploads import UploadPolicy

from documents.adapters.postgres import PostgresDocumentsUnitOfWork
from documents.adapters.vault import AesGcmVault
from documents.config import DocumentsSettings
from documents.handlers import Documents, DocumentsConfig

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class Service:
    runtime: Runtime
    documents: Documents
    transactions: Transactions[PostgresDocumentsUnitOfWork]
    stream: EventStream[PostgresDocumentsUnitOfWork]
    settings: DocumentsSettings
    http: httpx.AsyncClient

    def loops(self) -> list[Loop]:
        return [
            *self.runtime.event_loops(self.stream),
        ]

    async def close(self) -> None:
        await self.http.aclose()
        await self.runtime.close()


def vault(settings: DocumentsSettings) -> AesGcmVault:
    return AesGcmVault(settings.master_key_bytes(), settings.current_master_key_id())


def handlers(settings: DocumentsSettings, clock: Clock) -> Documents:
    config = DocumentsConfig(
        customer_uploads=UploadPolicy(settings.max_upload_bytes),
        upstream_documents=UploadPolicy(settings.max_upstream_document_bytes),
    )
    return Documents(clock, vault(settings), config)


async def build(settings: DocumentsSettings, clock: Clock | None = None) -> Service:
    runtime = await Runtime.start(settings, MIGRATIONS, clock)

    def unit_of_work(conn: Connection, store: EventStore) -> PostgresDocumentsUnitOfWork:
        return PostgresDocumentsUnitOfWork(conn, store)

    transactions = runtime.transactions(unit_of_work)
    documents = handlers(settings, runtime.clock)
    return Service(
        runtime, documents, transactions, runtime.stream(transactions), settings,
        traced_client(),
    )  # fmt: skip
