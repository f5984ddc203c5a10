"""NT-1/ID-3: activation-code letters as DIN 5008 PDFs, handed to a directory print queue;
CT-4/NT-2: a move's confirmation letter to the old address, from the real broker to the
print queue."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import date

import pytest
from contracts_schemas.common import PostalAddress
from notifier.adapters.channel import MessageExpiredError, PermanentSendError
from notifier.adapters.letters import address_lines, render_letter_pdf
from notifier.adapters.print_queue import DirectoryPrintQueue, LetterChannel, PrintJobManifest
from notifier.domain.contacts import apply
from notifier.domain.messages import RenderedMessage
from notifier.domain.plan import plan_messages, withheld_values
from notifier_harness import Customer, running_notifier
from notifier_servers import plain_text, running_smtp
from pypdf import PdfReader
from servicekit.clock import FixedClock


@pytest.fixture
def activation(ev, renderer):
    view = apply(None, ev.registered())
    event = ev.activation_code()
    (message,) = plan_messages(event, view)
    return message, renderer.render(message, withheld=withheld_values(event))


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_id3_activation_letter_pdf_contains_the_code_and_the_address_lines(ev, activation):
    message, rendered = activation
    assert message.postal_address is not None

    letter = render_letter_pdf(
        rendered, message.postal_address, date(2026, 3, 2), reference=message.message_key[:8]
    )

    text = text_of(letter.content)
    assert letter.content.startswith(b"%PDF-")
    assert letter.pages == 1
    assert "Ihr Aktivierungscode: X7K2-9PQ4" in text
    for line in ("Erika Mustermann", "Heidestraße 17", "51147 Köln"):
        assert line in text
    assert "Ihr Aktivierungscode\n" in text  # the subject line
    assert "Datum: 02.03.2026" in text
    assert "Guten Tag Erika Mustermann," in text


def test_id3_the_address_block_sits_in_the_din_5008_window_above_the_subject(ev, activation):
    message, rendered = activation
    assert message.postal_address is not None
    letter = render_letter_pdf(rendered, message.postal_address, date(2026, 3, 2), reference="ref")
    positions: dict[str, float] = {}

    def visitor(text, _cm, tm, _font, _size):
        if text.strip():
            positions.setdefault(text.strip(), tm[5])

    PdfReader(io.BytesIO(letter.content)).pages[0].extract_text(visitor_text=visitor)
    page_height_mm = 297.0
    to_mm_from_top = {k: page_height_mm - v / 72 * 25.4 for k, v in positions.items()}

    assert 62 <= to_mm_from_top["Erika Mustermann"] <= 90  # address zone of form B
    assert 45 <= to_mm_from_top["51147 Köln"] <= 90
    assert to_mm_from_top["Ihr Aktivierungscode"] > 90  # subject below the window


def test_nt1_a_letter_abroad_gets_the_country_line_and_foreign_letters_print(ev, renderer):
    address = PostalAddress(
        recipient="Łukasz Wójcik",
        street="ul. Długa 5",
        postal_code="00-238",
        city="Warszawa",
        country="PL",
    )
    event = ev.activation_code(address=address)
    (message,) = plan_messages(event, None)
    rendered = renderer.render(message)

    letter = render_letter_pdf(rendered, address, date(2026, 3, 2), reference="ref")

    assert address_lines(address)[-1] == "POLEN"
    text = text_of(letter.content)
    assert "POLEN" in text
    assert "Lukasz Wójcik" in text  # Ł transliterated in the core font, ó kept
    assert "Guten Tag," in text


def test_nt1_a_long_letter_flows_onto_a_second_page(ev):
    address = ev.address
    body = "\n\n".join(f"Absatz {i}: " + "Text " * 60 for i in range(12))
    rendered = RenderedMessage(subject="Ihr Aktivierungscode", text=body)

    letter = render_letter_pdf(rendered, address, date(2026, 3, 2), reference="ref")

    assert letter.pages >= 2
    assert "Seite 2 von" in text_of(letter.content)


async def test_nt1_print_queue_writes_the_pdf_and_a_manifest_atomically(tmp_path, ev, activation):
    message, rendered = activation
    queue_dir = tmp_path / "print-queue"
    channel = LetterChannel(DirectoryPrintQueue(queue_dir), clock=FixedClock(ev.now))

    reference = await channel.send(message, rendered)

    assert reference == f"print-dir:{message.message_key}"
    files = sorted(p.name for p in queue_dir.iterdir())
    assert files == [f"{message.message_key}.json", f"{message.message_key}.pdf"]  # no temp files
    manifest = PrintJobManifest.model_validate_json(
        (queue_dir / f"{message.message_key}.json").read_text()
    )
    pdf = (queue_dir / manifest.file).read_bytes()
    assert manifest.message_key == message.message_key
    assert manifest.kind == "activation_code"
    assert manifest.sha256 == hashlib.sha256(pdf).hexdigest()
    assert manifest.pages == len(PdfReader(io.BytesIO(pdf)).pages) == 1
    assert manifest.recipient == ["Erika Mustermann", "Heidestraße 17", "51147 Köln"]
    assert manifest.country == "DE"
    assert "X7K2-9PQ4" in text_of(pdf)
    raw = json.loads((queue_dir / f"{message.message_key}.json").read_text())
    assert raw["schema_name"] == "notifier.print-job.v1"
    assert (queue_dir / manifest.file).stat().st_mode & 0o777 == 0o640


async def test_nt4_resubmitting_the_same_letter_is_recognised_and_not_rewritten(
    tmp_path, ev, activation
):
    message, rendered = activation
    queue = DirectoryPrintQueue(tmp_path)
    channel = LetterChannel(queue, clock=FixedClock(ev.now))
    first = await channel.send(message, rendered)
    manifest_path = tmp_path / f"{message.message_key}.json"
    before = manifest_path.stat().st_mtime_ns

    second = await channel.send(message, rendered)

    assert first == second
    assert manifest_path.stat().st_mtime_ns == before
    assert len(list(tmp_path.iterdir())) == 2


async def test_nt4_an_activation_letter_past_its_latest_print_date_is_not_queued(
    tmp_path, ev, activation
):
    message, rendered = activation
    channel = LetterChannel(DirectoryPrintQueue(tmp_path), clock=FixedClock(message.not_after))

    with pytest.raises(MessageExpiredError):
        await channel.send(message, rendered)
    assert list(tmp_path.iterdir()) == []


async def test_nt1_a_letter_without_a_postal_address_is_a_permanent_failure(
    tmp_path, ev, activation
):
    message, rendered = activation
    no_address = message.model_copy(update={"postal_address": None})

    with pytest.raises(PermanentSendError, match="postal address"):
        await LetterChannel(DirectoryPrintQueue(tmp_path), clock=FixedClock(ev.now)).send(
            no_address, rendered
        )


@pytest.mark.integration
async def test_nt2_nt3_nt4_a_move_on_the_broker_is_one_letter_to_the_old_address(tmp_path):
    """Identity's AddressChanged (delivered twice) on the real broker: one letter in the
    print queue, addressed to where the customer lived, without the new address; one e-mail
    to the verified address, without it either; the notifier's view then holds the new address."""
    berlin = PostalAddress(
        recipient="Erika Mustermann", street="Lindenallee 5", postal_code="10115", city="Berlin"
    )
    async with (
        running_smtp() as smtp,
        running_notifier(smtp_port=smtp.port, print_queue_dir=tmp_path) as notifier,
    ):
        erika = Customer()
        await notifier.publish(erika.registered(), erika.email_verified())
        await notifier.contact_known(erika.customer_id)
        moved = erika.moved(berlin)
        await notifier.publish(moved, moved)

        deliveries = await notifier.settled(erika.customer_id, count=2)
        async with notifier.service.runtime.pool.acquire() as conn:
            view = await conn.fetchval(
                "SELECT view FROM contacts WHERE customer_id = $1", erika.customer_id
            )

    assert len(deliveries) == 2
    assert {(d["channel"], d["kind"], d["status"]) for d in deliveries} == {
        ("letter", "address_changed", "sent"),
        ("email", "address_changed", "sent"),
    }
    assert {d["event_id"] for d in deliveries} == {str(moved.event_id)}
    (letter,) = [d for d in deliveries if d["channel"] == "letter"]
    manifest = PrintJobManifest.model_validate_json(
        (tmp_path / f"{letter['message_key']}.json").read_text()
    )
    assert manifest.kind == "address_changed"
    assert manifest.recipient == ["Erika Mustermann", "Heidestraße 17", "51147 Köln"]
    text = text_of((tmp_path / manifest.file).read_bytes())
    assert "Bestätigung Ihrer Adressänderung" in text
    for line in ("Lindenallee", "10115", "Berlin"):
        assert line not in text
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [f"{letter['message_key']}.json"]
    (envelope,) = smtp.handler.envelopes
    assert envelope.rcpt_tos == [erika.email]
    (email,) = smtp.handler.messages()
    assert email["Subject"] == "Ihre Anschrift wurde geändert"
    assert "an Ihre bisherige Anschrift" in plain_text(email)
    assert "Lindenallee" not in email.as_string()
    assert json.loads(view)["address"]["street"] == "Lindenallee 5"
