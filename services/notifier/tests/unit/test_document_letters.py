"""DOC-4/NT-1: document letters - the enclosure fetched from the documents service's print
route at send time (classified like any send), laid into the print queue with the cover
letter, and the configuration of the documents service."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from contracts_schemas.documents import DocumentDelivery
from notifier.adapters.channel import PermanentSendError, RetryableSendError
from notifier.adapters.documents_http import (
    DocumentsApiSettings,
    FetchedDocument,
    HttpDocumentSource,
)
from notifier.adapters.print_queue import DirectoryPrintQueue, LetterChannel
from notifier.bootstrap import channels
from notifier.config import NotifierSettings
from notifier.domain.messages import ChannelKind
from notifier.domain.plan import plan_messages, withheld_values
from pydantic import ValidationError
from servicekit.clock import FixedClock

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
SETTINGS = DocumentsApiSettings(base_url="http://documents.test/", system="notifier", secret="s3")


def source(handler) -> HttpDocumentSource:
    return HttpDocumentSource(httpx.AsyncClient(transport=httpx.MockTransport(handler)), SETTINGS)


async def test_doc4_the_print_route_is_called_with_the_notifiers_service_credentials():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PDF, headers={"content-type": "application/pdf"})

    fetched = await source(handler).fetch("doc/1 ä")

    assert fetched == FetchedDocument(PDF, "application/pdf")
    (request,) = seen
    assert request.url.raw_path == b"/internal/documents/doc%2F1%20%C3%A4/print"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"notifier:s3").decode()


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (404, PermanentSendError, "documents: 404"),
        (400, PermanentSendError, "documents: 400"),
        (401, RetryableSendError, "credentials or grant"),
        (403, RetryableSendError, "credentials or grant"),
        (429, RetryableSendError, "documents: 429"),
        (503, RetryableSendError, "documents: 503"),
    ],
)
async def test_nt4_a_failed_fetch_is_classified_like_a_failed_send(status, error, reason):
    with pytest.raises(error, match=reason):
        await source(lambda request: httpx.Response(status, headers={"Retry-After": "7"})).fetch(
            "doc-1"
        )


async def test_nt4_a_fetch_that_times_out_or_cannot_connect_is_retried():
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(RetryableSendError, match="timeout"):
        await source(timeout).fetch("doc-1")
    with pytest.raises(RetryableSendError, match="ConnectError"):
        await source(refused).fetch("doc-1")


async def test_nt4_retry_after_of_the_documents_service_is_honoured():
    with pytest.raises(RetryableSendError) as raised:
        await source(lambda r: httpx.Response(503, headers={"Retry-After": "7"})).fetch("d")

    assert raised.value.retry_after == timedelta(seconds=7)


class FakeDocuments:
    def __init__(self, data: bytes = PDF, error: Exception | None = None) -> None:
        self.data = data
        self.error = error
        self.fetched: list[str] = []

    async def fetch(self, document_id: str) -> FetchedDocument:
        self.fetched.append(document_id)
        if self.error is not None:
            raise self.error
        return FetchedDocument(self.data, "application/pdf")


def letter(ev, renderer):
    event = ev.document(delivery=DocumentDelivery.POST, written_form=True)
    (message,) = plan_messages(event, ev.view())
    return event, message, renderer.render(message, withheld=withheld_values(event))


def channel(tmp_path, documents) -> LetterChannel:
    clock = FixedClock(datetime(2026, 3, 2, 13, 40, tzinfo=UTC))
    return LetterChannel(DirectoryPrintQueue(tmp_path), clock=clock, documents=documents)


async def test_doc4_the_letter_and_the_fetched_document_land_in_the_print_queue_together(
    ev, renderer, tmp_path
):
    event, message, rendered = letter(ev, renderer)
    documents = FakeDocuments()

    reference = await channel(tmp_path, documents).send(message, rendered)

    assert documents.fetched == [event.document_id]
    assert reference == f"print-dir:{message.message_key}"
    manifest = json.loads((tmp_path / f"{message.message_key}.json").read_text())
    assert manifest["kind"] == "document_letter"
    assert manifest["recipient"] == ["Erika Mustermann", "Heidestraße 17", "51147 Köln"]
    (enclosure,) = manifest["enclosures"]
    assert (tmp_path / enclosure["file"]).read_bytes() == PDF
    assert (tmp_path / manifest["file"]).read_bytes().startswith(b"%PDF-")


async def test_doc4_an_image_document_is_enclosed_as_a_pdf_page(ev, renderer, tmp_path):
    _, message, rendered = letter(ev, renderer)

    await channel(tmp_path, FakeDocuments(PNG)).send(message, rendered)

    manifest = json.loads((tmp_path / f"{message.message_key}.json").read_text())
    assert (tmp_path / manifest["enclosures"][0]["file"]).read_bytes().startswith(b"%PDF-")


async def test_doc4_a_document_that_cannot_be_printed_is_a_permanent_failure(
    ev, renderer, tmp_path
):
    _, message, rendered = letter(ev, renderer)

    with pytest.raises(PermanentSendError, match="neither PDF"):
        await channel(tmp_path, FakeDocuments(b"\x00\x00\x00\x18ftypheic")).send(message, rendered)
    assert list(tmp_path.iterdir()) == []


async def test_nt4_a_failed_fetch_queues_nothing_and_is_retried(ev, renderer, tmp_path):
    _, message, rendered = letter(ev, renderer)
    failing = FakeDocuments(error=RetryableSendError("documents: 503"))

    with pytest.raises(RetryableSendError, match="503"):
        await channel(tmp_path, failing).send(message, rendered)
    assert list(tmp_path.iterdir()) == []


async def test_nt1_without_a_documents_service_document_letters_wait_for_the_configuration(
    ev, renderer, tmp_path
):
    _, message, rendered = letter(ev, renderer)

    with pytest.raises(RetryableSendError, match="no documents service configured"):
        await channel(tmp_path, None).send(message, rendered)


async def test_id3_letters_without_an_enclosure_never_ask_the_documents_service(
    ev, renderer, tmp_path
):
    (message,) = plan_messages(ev.activation_code(), ev.view())
    documents = FakeDocuments()

    await channel(tmp_path, documents).send(message, renderer.render(message))

    assert documents.fetched == []
    manifest = json.loads((tmp_path / f"{message.message_key}.json").read_text())
    assert manifest["enclosures"] == []


def test_nt1_the_documents_service_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_PRINT_QUEUE_DIR", str(tmp_path))
    monkeypatch.setenv("PORTAL_DOCUMENTS_BASE_URL", "http://127.0.0.1:8005")
    monkeypatch.setenv("PORTAL_DOCUMENTS_SECRET", "notifier-secret")
    settings = NotifierSettings()

    documents = settings.documents()
    assert documents is not None
    assert (documents.base_url, documents.system) == ("http://127.0.0.1:8005", "notifier")
    assert "notifier-secret" not in repr(settings)
    letters = channels(settings, httpx.AsyncClient(), FixedClock(datetime.now(UTC)))
    assert isinstance(letters._channels[ChannelKind.LETTER], LetterChannel)
    assert letters._channels[ChannelKind.LETTER]._documents is not None


def test_nt1_the_documents_service_needs_the_notifiers_secret():
    with pytest.raises(ValidationError, match="documents_secret"):
        NotifierSettings(documents_base_url="http://127.0.0.1:8005")


def test_nt4_the_lease_must_outlast_the_documents_timeout():
    with pytest.raises(ValidationError, match="sending_lease_seconds"):
        NotifierSettings(
            documents_base_url="http://documents",
            documents_secret="s",
            documents_timeout_seconds=200,
        )
