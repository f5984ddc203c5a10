"""Documents on the real PostgreSQL and Kafka, driven through its HTTP app (ASGI): sensitive
documents behind the second factor, sealed bytes, master key rotation, e-mail instead of
letter with written-form documents by post, refused uploads with nothing half-stored, and
other customers' documents, messages and attachments unreachable."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from contracts_schemas import documents as ev
from contracts_schemas import topics
from contracts_schemas.cloudevents import decode, from_kafka
from documents.bootstrap import Service, build
from documents.config import DocumentsSettings
from documents.entrypoints.api import create_app
from documents.entrypoints.cli import rotate_master_key
from documents.entrypoints.stream import subscribe
from documents_world import EXE, JPEG, KEY_1, KEY_2, PDF, email_verified, upstream_document
from pydantic import SecretStr
from servicekit.auth import (
    ServiceCredentials,
    basic_authorization,
    generate_signing_key,
    mint_token,
)
from servicekit.db import drop_schema
from servicekit.kafka import reliable_producer
from servicekit.testing import publish, read_topic, required_env, unique, until

pytestmark = pytest.mark.integration

PRIVATE_KEY, JWKS = generate_signing_key("documents-it")
SYSTEM = basic_authorization("output-management", "om-secret")
PRINTER = basic_authorization("notifier", "printer-secret")
MAX_UPLOAD = 256 * 1024


def key_text(key: bytes) -> SecretStr:
    return SecretStr(base64.urlsafe_b64encode(key).decode())


def settings_for(prefix: str, current: str = "k1", **keys: bytes) -> DocumentsSettings:
    return DocumentsSettings(
        database_url=required_env("PORTAL_DATABASE_URL"),
        kafka_bootstrap=required_env("PORTAL_KAFKA_BOOTSTRAP"),
        database_schema=prefix.rstrip(".").replace("-", "_"), topic_prefix=prefix,
        instance_id=prefix.rstrip("."), jwks=json.dumps(JWKS),
        service_credentials={
            "output-management": ServiceCredentials.digest("om-secret"),
            "notifier": ServiceCredentials.digest("printer-secret"),
        },
        master_keys={k: key_text(v) for k, v in (keys or {"k1": KEY_1}).items()},
        master_key_id=current, max_upload_bytes=MAX_UPLOAD,
    )  # fmt: skip


@asynccontextmanager
async def running(settings: DocumentsSettings) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    service = await build(settings)
    subscribe(service.stream, service.documents)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop(stop)) for loop in service.loops()]
    transport = httpx.ASGITransport(app=create_app(service))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://documents") as http:
            yield service, http
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await service.close()


@asynccontextmanager
async def documents_service() -> AsyncIterator[tuple[Service, httpx.AsyncClient, str]]:
    prefix = unique("it") + "."
    settings = settings_for(prefix)
    try:
        async with running(settings) as (service, http):
            yield service, http, prefix
    finally:
        await drop_schema(settings.database_url.get_secret_value(), settings.schema_name)


def bearer(customer_id: str, second_factor: bool = False) -> dict[str, str]:
    methods = ("pwd", "sms") if second_factor else ("pwd",)
    expires = datetime.now(UTC) + timedelta(hours=1)
    token = mint_token(PRIVATE_KEY, customer_id, "portal", expires, methods=methods)
    return {"Authorization": f"Bearer {token}"}


async def deliver(http: httpx.AsyncClient, **kwargs: Any) -> dict[str, Any]:
    message = upstream_document(**kwargs)
    body = message.model_dump(mode="json", exclude={"source_system"})
    response = await http.post("/internal/documents", json=body, headers={"Authorization": SYSTEM})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def mailbox_events(prefix: str, at_least: int) -> list[Any]:
    records = await read_topic(
        required_env("PORTAL_KAFKA_BOOTSTRAP"), prefix + topics.DOCUMENTS_MAILBOX,
        at_least=at_least, wait_seconds=5.0,
    )  # fmt: skip
    return [decode(from_kafka(r.headers, r.value)) for r in records]


async def count(service: Service, table: str) -> int:
    async with service.runtime.pool.acquire() as conn:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608


async def test_doc3_sensitive_document_needs_the_second_factor_bytes_sealed_and_rotation() -> None:
    async with documents_service() as (service, http, prefix):
        sensitive = await deliver(
            http, customer_id="anna", category="health-benefit", sensitive=True,
            title="Leistungsabrechnung Kniearthroskopie",
        )  # fmt: skip
        producer = reliable_producer(required_env("PORTAL_KAFKA_BOOTSTRAP"), "documents-test")
        await producer.start()
        try:  # one document through the upstream topic
            await publish(producer, upstream_document("anna", "OM-KAFKA", title="Police"),
                          prefix=prefix, source="/output-management")  # fmt: skip
        finally:
            await producer.stop()

        async def both_listed() -> list[dict[str, Any]] | None:
            page = (await http.get("/documents", headers=bearer("anna"))).json()
            return page["items"] if page["total"] == 2 else None

        items = {i["document_id"]: i for i in await until(both_listed)}
        listed = items[sensitive["document_id"]]
        assert listed["greyed_out"]
        assert listed["title"] != "Leistungsabrechnung Kniearthroskopie"

        path = f"/documents/{sensitive['document_id']}/content"
        refused = await http.get(path, headers=bearer("anna"))
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert "Zwei-Faktor-Authentifizierung" in refused.json()["detail"]
        opened = await http.get(path, headers=bearer("anna", second_factor=True))
        assert opened.status_code == 200
        assert opened.content == PDF

        async with service.runtime.pool.acquire() as conn:
            stored = [bytes(r["content"]) for r in await conn.fetch("SELECT content FROM blobs")]
        assert len(stored) == 2
        for content in stored:
            assert PDF not in content
            assert b"Gonarthrose" not in content
            assert b"%PDF" not in content

        # Rotation: k2 becomes current, every data key is re-wrapped, then k1 is dropped.
        rotated = settings_for(prefix, "k2", k1=KEY_1, k2=KEY_2)
        assert await rotate_master_key(rotated, batch=1) == 2
        async with service.runtime.pool.acquire() as conn:
            assert {r["key_id"] for r in await conn.fetch("SELECT key_id FROM data_keys")} == {"k2"}
            after = [bytes(r["content"]) for r in await conn.fetch("SELECT content FROM blobs")]
        assert sorted(after) == sorted(stored)  # documents were not rewritten
        async with running(settings_for(prefix, "k2", k2=KEY_2)) as (_, only_k2):
            for document_id in items:
                response = await only_k2.get(
                    f"/documents/{document_id}/content", headers=bearer("anna", True)
                )
                assert response.status_code == 200
                assert response.content == PDF


async def test_doc4_email_instead_of_letter_on_and_off_written_form_by_post_either_way() -> None:
    async with documents_service() as (_, http, prefix):
        refused = await http.put(
            "/documents/delivery-preference", json={"email_instead_of_letter": True},
            headers=bearer("anna"),
        )  # fmt: skip
        assert refused.status_code == 409  # no verified e-mail address yet
        producer = reliable_producer(required_env("PORTAL_KAFKA_BOOTSTRAP"), "documents-test")
        await producer.start()
        try:
            await publish(producer, email_verified("anna", "anna@example.org"), prefix=prefix,
                          source="/identity")  # fmt: skip
        finally:
            await producer.stop()

        async def verified() -> bool:
            found = await http.get("/documents/delivery-preference", headers=bearer("anna"))
            return bool(found.json()["verified_email"])

        await until(verified)
        on = await http.put(
            "/documents/delivery-preference", json={"email_instead_of_letter": True},
            headers=bearer("anna"),
        )  # fmt: skip
        assert on.json() == {"email_instead_of_letter": True, "verified_email": True}
        while_on = await deliver(http, customer_id="anna", title="Beitragsrechnung")
        written_on = await deliver(http, customer_id="anna", title="Kündigung",
                                   written_form=True)  # fmt: skip
        off = await http.put(
            "/documents/delivery-preference", json={"email_instead_of_letter": False},
            headers=bearer("anna"),
        )  # fmt: skip
        assert off.json()["email_instead_of_letter"] is False
        while_off = await deliver(http, customer_id="anna", title="Beitragsrechnung")
        written_off = await deliver(http, customer_id="anna", title="Mahnung",
                                    written_form=True)  # fmt: skip
        assert [d["delivery"] for d in (while_on, written_on, while_off, written_off)] == [
            "mailbox", "post", "post", "post",
        ]  # fmt: skip

        events = await until(lambda: _at_least(mailbox_events(prefix, 6), 6))
        kinds = [type(e).__name__ for e in events]
        assert kinds.count("EmailInsteadOfLetterActivated") == 1
        assert kinds.count("EmailInsteadOfLetterDeactivated") == 1
        announced = {e.document_id: e for e in events if isinstance(e, ev.DocumentAvailable)}
        assert announced[while_on["document_id"]].delivery is ev.DocumentDelivery.MAILBOX
        for written in (written_on, written_off):
            assert announced[written["document_id"]].delivery is ev.DocumentDelivery.POST
            assert announced[written["document_id"]].written_form
            print_path = f"/internal/documents/{written['document_id']}/print"
            not_the_printer = await http.get(print_path, headers={"Authorization": SYSTEM})
            assert not_the_printer.status_code == 403, "output management cannot fetch prints"
            printed = await http.get(print_path, headers={"Authorization": PRINTER})
            assert printed.status_code == 200
            assert printed.content == PDF
        mailbox_only = await http.get(f"/internal/documents/{while_on['document_id']}/print",
                                      headers={"Authorization": PRINTER})  # fmt: skip
        assert mailbox_only.status_code == 404
        assert (await http.get("/documents", headers=bearer("anna"))).json()["total"] == 4


async def _at_least(events: Awaitable[list[Any]], n: int) -> list[Any] | None:
    found = await events
    return found if len(found) >= n else None


async def test_uploads_oversized_mislabelled_and_empty_are_refused_nothing_half_stored() -> None:
    async with documents_service() as (service, http, _):
        cases = [
            (PDF + bytes(MAX_UPLOAD), "gross.pdf", 413, "upload-too-large"),
            (EXE, "rechnung.pdf", 415, "upload-unsupported-type"),
            (b"", "leer.pdf", 422, "upload-empty"),
        ]
        for content, name, status, problem in cases:
            response = await http.post(
                "/messages", headers=bearer("anna"),
                data={"subject": "Rechnung", "text": "Anbei die Rechnung."},
                files=[("files", ("foto.jpg", JPEG, "image/jpeg")),
                       ("files", (name, content, "application/pdf"))],
            )  # fmt: skip
            assert response.status_code == status, response.text
            assert response.json()["type"] == f"urn:portal:problem:{problem}"
            assert response.json()["detail"]
        for table in ("messages", "attachments", "blobs", "data_keys", "outbox"):
            assert await count(service, table) == 0, table
        sent = await http.post(
            "/messages", headers=bearer("anna"), data={"subject": "Rechnung", "text": "Anbei."},
            files=[("files", ("foto.jpg", JPEG, "application/octet-stream"))],
        )  # fmt: skip
        assert sent.status_code == 201, sent.text
        assert sent.json()["attachments"][0]["content_type"] == "image/jpeg"


async def test_another_customers_documents_messages_and_attachments_are_unreachable() -> None:
    async with documents_service() as (_, http, _prefix):
        document = await deliver(http, customer_id="anna")
        sent = await http.post(
            "/messages", headers=bearer("anna"), data={"subject": "Frage", "text": "Text"},
            files=[("files", ("a.pdf", PDF, "application/pdf"))],
        )  # fmt: skip
        message = sent.json()
        attachment = message["attachments"][0]["attachment_id"]
        own = [
            f"/documents/{document['document_id']}",
            f"/documents/{document['document_id']}/content",
            f"/messages/{message['message_id']}",
            f"/messages/{message['message_id']}/attachments/{attachment}",
        ]
        for path in own:
            assert (await http.get(path, headers=bearer("anna", True))).status_code == 200, path
            other = await http.get(path, headers=bearer("ben", True))
            assert other.status_code == 404, path
            assert (await http.get(path)).status_code == 401, path
        for path in (f"/documents/{document['document_id']}/read",
                     f"/documents/{document['document_id']}/unread"):  # fmt: skip
            assert (await http.post(path, headers=bearer("ben"))).status_code == 404
        assert (await http.get("/documents", headers=bearer("ben"))).json()["total"] == 0
        assert (await http.get("/messages", headers=bearer("ben"))).json()["total"] == 0
        # Internal routes take service credentials, never a customer token.
        internal = f"/internal/messages/{message['message_id']}"
        assert (await http.get(internal, headers=bearer("anna", True))).status_code == 401
        read = await http.get(internal, headers={"Authorization": SYSTEM})
        assert read.status_code == 200
        assert read.json()["text"] == "Text"
