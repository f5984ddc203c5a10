"""The stream entrypoint on FastStream's in-memory test broker: identity's events and
upstream documents published as CloudEvents reach the handlers through the inbox."""

from __future__ import annotations

from contracts_schemas import documents as ev
from contracts_schemas import topic_of
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from documents.adapters.memory import InMemoryDocumentsUnitOfWork
from documents.config import DocumentsSettings
from documents.entrypoints.stream import IDENTITY_GROUP, UPSTREAM_GROUP, subscribe
from documents.handlers import Documents
from documents_world import (
    EXE,
    KEY_1,
    NOW,
    account_cancelled,
    email_verified,
    key_text,
    upstream_document,
    vault,
)
from faststream.kafka import KafkaBroker, TestKafkaBroker
from servicekit.clock import FixedClock
from servicekit.memory import memory_transactions
from servicekit.stream import EventStream


def documents_stream() -> tuple[KafkaBroker, InMemoryDocumentsUnitOfWork]:
    uow = InMemoryDocumentsUnitOfWork()
    settings = DocumentsSettings(master_keys={"k1": key_text(KEY_1)}, master_key_id="k1")
    stream = EventStream(settings, memory_transactions(uow))
    return subscribe(stream, Documents(FixedClock(NOW), vault())), uow


async def send(broker: KafkaBroker, message: Contract, source: str) -> None:
    cloud_event = encode(message, source)
    await broker.publish(
        cloud_event.data, topic_of(message), key=(cloud_event.subject or "").encode(),
        headers=dict(cloud_event.header_pairs()),
    )  # fmt: skip


async def test_doc1_an_upstream_document_on_kafka_lands_in_the_mailbox_once() -> None:
    broker, uow = documents_stream()
    message = upstream_document(message_id="OM-7")
    async with TestKafkaBroker(broker) as test_broker:
        await send(test_broker, message, "/output-management")
        await send(test_broker, message, "/output-management")
    assert len(uow.documents.rows) == 1
    assert len([m for m in uow.events.published if isinstance(m, ev.DocumentAvailable)]) == 1
    assert uow.inbox.seen[UPSTREAM_GROUP] == {"/output-management#OM-7"}


async def test_doc1_an_unstorable_upstream_document_is_not_stored() -> None:
    broker, uow = documents_stream()
    async with TestKafkaBroker(broker) as test_broker:
        await send(test_broker, upstream_document(content=EXE), "/output-management")
    assert not uow.documents.rows
    assert not uow.contents.blobs.blobs


async def test_doc4_id9_identity_events_verify_the_address_and_cancel_the_option() -> None:
    broker, uow = documents_stream()
    async with TestKafkaBroker(broker) as test_broker:
        await send(test_broker, email_verified("anna", "anna@example.org"), "/identity")
        assert uow.preferences.rows["anna"].verified_email == "anna@example.org"
        uow.preferences.rows["anna"] = uow.preferences.rows["anna"].__class__(
            "anna", "anna@example.org", True, email_instead_of_letter=True
        )
        await send(test_broker, account_cancelled("anna"), "/identity")
    preference = uow.preferences.rows["anna"]
    assert preference.cancelled
    assert not preference.email_instead_of_letter
    assert [type(m) for m in uow.events.published] == [ev.EmailInsteadOfLetterDeactivated]
    assert len(uow.inbox.seen[IDENTITY_GROUP]) == 2
