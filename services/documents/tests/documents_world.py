"""Shared test data for the documents service: upstream documents, files, keys, events."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts_schemas import documents as ev
from contracts_schemas import identity as idev
from contracts_schemas.common import PostalAddress
from documents.adapters.memory import InMemoryDocumentsUnitOfWork
from documents.adapters.vault import AesGcmVault
from documents.handlers import Documents
from servicekit.clock import FixedClock
from servicekit.memory import memory_transactions
from servicekit.unit_of_work import Transactions

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
PDF = (
    b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    b"BT /F1 12 Tf (Diagnose: Gonarthrose, Behandlung: Physiotherapie) Tj ET\n"
    b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(64)
EXE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + bytes(100)
    + (b"This program cannot be run in DOS mode.\r\r\n$")
)
KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))


def key_text(key: bytes) -> str:
    """A master key as PORTAL_MASTER_KEYS holds it: URL-safe base64."""
    return base64.urlsafe_b64encode(key).decode()


def vault(current: str = "k1", **keys: bytes) -> AesGcmVault:
    return AesGcmVault(keys or {"k1": KEY_1}, current)


@dataclass
class World:
    clock: FixedClock
    uow: InMemoryDocumentsUnitOfWork
    transactions: Transactions[InMemoryDocumentsUnitOfWork]
    documents: Documents

    def published(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.uow.events.published if isinstance(m, kind)]


def world(documents_vault: AesGcmVault | None = None) -> World:
    clock = FixedClock(NOW)
    uow = InMemoryDocumentsUnitOfWork()
    return World(clock, uow, memory_transactions(uow), Documents(clock, documents_vault or vault()))


def upstream_document(
    customer_id: str = "anna",
    message_id: str | None = None,
    *,
    content: bytes = PDF,
    category: str = "contract",
    title: str = "Versicherungsschein Hausrat",
    sensitive: bool = False,
    written_form: bool = False,
    policy_number: str = "HR-1",
    claim_number: str | None = None,
    answers_message_id: str | None = None,
    source_system: str = "output-management",
    filename: str = "dokument.pdf",
    occurred_at: datetime = NOW,
) -> ev.DocumentIssuedUpstream:
    return ev.DocumentIssuedUpstream(
        message_id=message_id or uuid.uuid4().hex, source_system=source_system,
        occurred_at=occurred_at, policy_number=policy_number, customer_id=customer_id,
        claim_number=claim_number, answers_message_id=answers_message_id, category=category,
        title=title, sensitive=sensitive, written_form=written_form, filename=filename,
        content_base64=base64.b64encode(content).decode(),
    )  # fmt: skip


def _identity(kind: type[Any], customer_id: str, at: datetime, **fields: Any) -> Any:
    return kind(
        event_id=uuid.uuid4(), aggregate_id=customer_id, aggregate_version=1, occurred_at=at,
        customer_ids=(customer_id,), customer_id=customer_id, **fields,
    )  # fmt: skip


def email_verified(customer_id: str, email: str, at: datetime = NOW) -> idev.EmailVerified:
    event: idev.EmailVerified = _identity(idev.EmailVerified, customer_id, at, email=email)
    return event


def contact_changed(customer_id: str, email: str, at: datetime = NOW) -> idev.ContactDetailsChanged:
    event: idev.ContactDetailsChanged = _identity(
        idev.ContactDetailsChanged, customer_id, at, email=email, previous_email="old@example.org"
    )
    return event


def account_cancelled(customer_id: str, at: datetime = NOW) -> idev.AccountCancelled:
    event: idev.AccountCancelled = _identity(idev.AccountCancelled, customer_id, at)
    return event


def registered(customer_id: str, email: str, at: datetime = NOW) -> idev.CustomerRegistered:
    event: idev.CustomerRegistered = _identity(
        idev.CustomerRegistered, customer_id, at, first_name="Anna", last_name="Muster",
        birth_date="1980-01-01", email=email,
        address=PostalAddress(recipient="Anna Muster", street="Weg 1", postal_code="10115",
                              city="Berlin"),
    )  # fmt: skip
    return event
