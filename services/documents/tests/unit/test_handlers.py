"""The documents handlers on the in-memory unit of work (DOC-1..DOC-5, ID-9)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from contracts_schemas import documents as ev
from cryptography.exceptions import InvalidTag
from documents import commands as c
from documents.domain.model import (
    SENSITIVE_TITLE,
    Category,
    DocumentFilter,
    DocumentsError,
    Page,
    Reason,
)
from documents.handlers import Documents, DocumentView
from documents_world import (
    EXE,
    JPEG,
    KEY_1,
    KEY_2,
    NOW,
    PDF,
    World,
    account_cancelled,
    contact_changed,
    email_verified,
    registered,
    upstream_document,
    vault,
    world,
)
from servicekit.stream import Rejected


async def deliver(w: World, **kwargs: object) -> str:
    message = upstream_document(**kwargs)  # type: ignore[arg-type]
    delivered = await w.transactions.execute(w.documents.deliver, message)
    return delivered.document.document_id


async def email_instead_of_letter(w: World, customer_id: str = "anna") -> None:
    await w.transactions.run(
        lambda uow: w.documents.record_identity([email_verified(customer_id, "a@example.org")], uow)
    )
    await w.transactions.execute(
        w.documents.set_email_instead_of_letter, c.SetEmailInsteadOfLetter(customer_id, on=True)
    )


async def listing(
    w: World, customer_id: str = "anna", second_factor: bool = False, **where: object
) -> Page[DocumentView]:
    return await w.transactions.execute(
        w.documents.list_documents,
        c.ListDocuments(customer_id, second_factor, DocumentFilter(**where)),  # type: ignore[arg-type]
    )


# --- DOC-1 ------------------------------------------------------------------------------


async def test_doc1_documents_arrive_in_the_customers_mailbox_newest_first_with_paging() -> None:
    w = world()
    ids = []
    for day in range(3):
        w.clock.set(NOW + timedelta(days=day))
        ids.append(await deliver(w, title=f"Brief {day}"))
    await deliver(w, customer_id="ben")

    first = await listing(w, limit=2)
    assert [v.document.document_id for v in first.items] == [ids[2], ids[1]]
    assert first.total == 3
    second = await listing(w, limit=2, offset=2)
    assert [v.document.document_id for v in second.items] == [ids[0]]
    assert [v.title for v in first.items] == ["Brief 2", "Brief 1"]


async def test_doc1_filters_by_category_unread_contract_and_claim() -> None:
    w = world()
    contract = await deliver(w, category="contract", policy_number="HR-1")
    claim = await deliver(w, category="claim", policy_number="HR-1", claim_number="S-7")
    other = await deliver(w, category="invoice", policy_number="KFZ-2")
    await w.transactions.execute(
        w.documents.mark_document, c.MarkDocument("anna", other, read=True, second_factor=False)
    )

    def ids(page: Page[DocumentView]) -> set[str]:
        return {v.document.document_id for v in page.items}

    assert ids(await listing(w, category=Category.CLAIM)) == {claim}
    assert ids(await listing(w, policy_number="HR-1")) == {contract, claim}
    assert ids(await listing(w, claim_number="S-7")) == {claim}
    assert ids(await listing(w, unread=True)) == {contract, claim}
    assert ids(await listing(w, unread=False)) == {other}


async def test_doc1_download_gives_the_bytes_and_marks_read_unread_is_possible_again() -> None:
    w = world()
    document_id = await deliver(w)
    content = await w.transactions.execute(
        w.documents.open_document, c.OpenDocument("anna", document_id, second_factor=False)
    )
    assert content.data == PDF
    assert content.content_type == "application/pdf"
    assert w.uow.documents.rows[document_id].read_at == NOW

    view = await w.transactions.execute(
        w.documents.mark_document, c.MarkDocument("anna", document_id, read=False,
                                                  second_factor=False)
    )  # fmt: skip
    assert view.document.read_at is None


async def test_doc1_the_same_upstream_message_twice_is_one_document_announced_once() -> None:
    w = world()
    message = upstream_document(message_id="OM-1")
    first = await w.transactions.execute(w.documents.deliver, message)
    again = await w.transactions.execute(w.documents.deliver, message)
    assert again.duplicate
    assert again.document.document_id == first.document.document_id
    assert len(w.uow.documents.rows) == 1
    assert len(w.published(ev.DocumentAvailable)) == 1
    # The same message id from another system is another document.
    other = upstream_document(message_id="OM-1", source_system="claims-handling")
    assert not (await w.transactions.execute(w.documents.deliver, other)).duplicate


async def test_doc1_an_upstream_exe_named_pdf_is_refused_and_nothing_is_stored() -> None:
    w = world()
    with pytest.raises(DocumentsError) as refused:
        await deliver(w, content=EXE, filename="police.pdf")
    assert refused.value.reason is Reason.UPLOAD_REFUSED
    assert refused.value.status == 415
    assert not w.uow.documents.rows
    assert not w.uow.contents.blobs.blobs
    assert not w.uow.events.published


async def test_doc1_an_unknown_category_is_refused() -> None:
    w = world()
    with pytest.raises(DocumentsError) as refused:
        await deliver(w, category="horoscope")
    assert refused.value.status == 422


async def test_doc1_refused_upstream_documents_from_kafka_are_rejected_for_dead_letters() -> None:
    w = world()
    with pytest.raises(Rejected, match="upload-refused"):
        await w.transactions.run(
            lambda uow: w.documents.deliver_from_stream([upstream_document(content=EXE)], uow)
        )


async def test_doc1_another_customers_document_does_not_exist_for_this_one() -> None:
    w = world()
    document_id = await deliver(w, customer_id="ben")
    with pytest.raises(DocumentsError) as refused:
        await w.transactions.execute(
            w.documents.show_document, c.ShowDocument("anna", document_id, second_factor=True)
        )
    assert refused.value.reason is Reason.NOT_FOUND
    with pytest.raises(DocumentsError) as refused:
        await w.transactions.execute(
            w.documents.open_document, c.OpenDocument("anna", document_id, second_factor=True)
        )
    assert refused.value.reason is Reason.NOT_FOUND
    with pytest.raises(DocumentsError):
        await w.transactions.execute(
            w.documents.mark_document, c.MarkDocument("anna", document_id, True, False)
        )
    assert (await listing(w)).total == 0


# --- DOC-2 ------------------------------------------------------------------------------


async def test_doc2_a_secure_message_with_attachments_is_stored_sealed_and_announced() -> None:
    w = world()
    message = await w.transactions.execute(
        w.documents.send_message,
        c.SendMessage("anna", "Frage zur Rechnung", "Bitte erstatten Sie ...", "HR-1", None,
                      (c.IncomingFile("rechnung.pdf", PDF), c.IncomingFile("foto.jpg", JPEG))),
    )  # fmt: skip
    assert [a.content.content_type for a in message.attachments] == ["application/pdf",
                                                                     "image/jpeg"]  # fmt: skip
    sent = w.published(ev.SecureMessageSent)
    assert [(s.message_id, s.attachment_count, s.subject) for s in sent] == [
        (message.message_id, 2, "Frage zur Rechnung")
    ]
    shown = await w.transactions.execute(
        w.documents.show_message, c.ShowMessage("anna", message.message_id)
    )
    assert shown.text == "Bitte erstatten Sie ..."
    attachment = message.attachments[1]
    content = await w.transactions.execute(
        w.documents.open_attachment,
        c.OpenAttachment("anna", message.message_id, attachment.attachment_id),
    )
    assert content.data == JPEG
    for blob in w.uow.contents.blobs.blobs.values():
        assert b"Bitte erstatten" not in blob.content
        assert blob.content not in (PDF, JPEG)


@pytest.mark.parametrize(
    ("content", "status"), [(EXE, 415), (b"", 422), (PDF + bytes(10 * 1024 * 1024), 413)]
)
async def test_doc2_one_refused_attachment_refuses_the_message_and_nothing_is_stored(
    content: bytes, status: int
) -> None:
    w = world()
    with pytest.raises(DocumentsError) as refused:
        await w.transactions.execute(
            w.documents.send_message,
            c.SendMessage("anna", "Betreff", "Text", files=(c.IncomingFile("ok.pdf", PDF),
                                                             c.IncomingFile("x.pdf", content))),
        )  # fmt: skip
    assert refused.value.status == status
    assert not w.uow.messages.rows
    assert not w.uow.contents.blobs.blobs
    assert not w.uow.events.published


async def test_doc2_an_answer_arrives_in_the_mailbox_and_marks_the_message_answered() -> None:
    w = world()
    message = await w.transactions.execute(
        w.documents.send_message, c.SendMessage("anna", "Frage", "Wie ist der Stand?")
    )
    document_id = await deliver(w, category="answer", title="Ihre Anfrage",
                                answers_message_id=message.message_id)  # fmt: skip
    answered = w.uow.messages.rows[message.message_id]
    assert answered.answered_at == NOW
    assert answered.answer_document_ids == (document_id,)
    assert [a.message_id for a in w.published(ev.SecureMessageAnswered)] == [message.message_id]
    page = await listing(w, category=Category.ANSWER)
    assert [v.document.answers_message_id for v in page.items] == [message.message_id]


async def test_doc2_an_answer_to_another_customers_message_is_refused() -> None:
    w = world()
    message = await w.transactions.execute(
        w.documents.send_message, c.SendMessage("ben", "Frage", "Text")
    )
    with pytest.raises(DocumentsError):
        await deliver(w, customer_id="anna", answers_message_id=message.message_id)


async def test_doc2_another_customers_messages_and_attachments_are_unreachable() -> None:
    w = world()
    message = await w.transactions.execute(
        w.documents.send_message,
        c.SendMessage("ben", "Frage", "Text", files=(c.IncomingFile("a.pdf", PDF),)),
    )
    with pytest.raises(DocumentsError):
        await w.transactions.execute(
            w.documents.show_message, c.ShowMessage("anna", message.message_id)
        )
    with pytest.raises(DocumentsError):
        await w.transactions.execute(
            w.documents.open_attachment,
            c.OpenAttachment("anna", message.message_id, message.attachments[0].attachment_id),
        )
    page = await w.transactions.execute(w.documents.list_messages, c.ListMessages("anna"))
    assert page.total == 0
    # The insurer's systems read it (internal API: no customer).
    internal = await w.transactions.execute(
        w.documents.read_message_internally, c.ReadMessageInternally(message.message_id)
    )
    assert internal.text == "Text"


async def test_doc2_a_message_needs_a_subject_and_a_text() -> None:
    w = world()
    with pytest.raises(DocumentsError) as refused:
        await w.transactions.execute(w.documents.send_message, c.SendMessage("anna", " ", "x"))
    assert refused.value.status == 422


# --- DOC-3 ------------------------------------------------------------------------------


async def test_doc3_a_sensitive_document_is_listed_greyed_out_without_its_title() -> None:
    w = world()
    await deliver(w, category="health-benefit", title="Leistungsabrechnung Physiotherapie",
                  sensitive=True)  # fmt: skip
    [view] = (await listing(w, second_factor=False)).items
    assert view.greyed_out
    assert view.title == SENSITIVE_TITLE
    [view] = (await listing(w, second_factor=True)).items
    assert not view.greyed_out
    assert view.title == "Leistungsabrechnung Physiotherapie"


async def test_doc3_its_content_is_refused_without_the_second_factor_and_says_how() -> None:
    w = world()
    document_id = await deliver(w, category="health-benefit", sensitive=True)
    with pytest.raises(DocumentsError) as refused:
        await w.transactions.execute(
            w.documents.open_document, c.OpenDocument("anna", document_id, second_factor=False)
        )
    assert refused.value.reason is Reason.SECOND_FACTOR_REQUIRED
    assert refused.value.status == 403
    assert "Zwei-Faktor-Authentifizierung" in refused.value.detail
    assert "SMS-Code" in refused.value.detail
    assert w.uow.documents.rows[document_id].read_at is None  # not opened, not read
    opened = await w.transactions.execute(
        w.documents.open_document, c.OpenDocument("anna", document_id, second_factor=True)
    )
    assert opened.data == PDF


async def test_doc3_stored_bytes_are_never_the_plaintext_and_tampering_is_detected() -> None:
    w = world()
    document_id = await deliver(w, sensitive=True, category="health-benefit")
    blob_id = w.uow.documents.rows[document_id].content.blob_id
    stored = w.uow.contents.blobs.blobs[blob_id]
    assert PDF not in stored.content
    assert b"Gonarthrose" not in stored.content
    key = w.uow.contents.keys[blob_id]
    assert key.key_id == "k1"
    assert KEY_1 not in key.wrapped_key
    tampered = bytearray(stored.content)
    tampered[-1] ^= 1
    w.uow.contents.blobs.blobs[blob_id] = type(stored)(blob_id, stored.content_type,
                                                       bytes(tampered))  # fmt: skip
    with pytest.raises(InvalidTag):
        await w.transactions.execute(
            w.documents.open_document, c.OpenDocument("anna", document_id, second_factor=True)
        )


async def test_doc3_rotating_the_master_key_rewraps_data_keys_and_keeps_everything_readable() -> (
    None
):
    w = world()
    documents = [await deliver(w, title=f"Brief {i}") for i in range(5)]
    message = await w.transactions.execute(
        w.documents.send_message,
        c.SendMessage("anna", "Frage", "Text", files=(c.IncomingFile("a.pdf", PDF),)),
    )
    ciphertexts = {b: blob.content for b, blob in w.uow.contents.blobs.blobs.items()}

    rotated = Documents(w.clock, vault("k2", k1=KEY_1, k2=KEY_2))
    batches = []
    while count := await w.transactions.execute(rotated.rewrap_data_keys, c.RewrapDataKeys(3)):
        batches.append(count)
    assert batches == [3, 3, 1]  # 5 documents, 1 message text, 1 attachment
    assert {k.key_id for k in w.uow.contents.keys.values()} == {"k2"}
    # Ciphertexts untouched: rotation never rewrites a document.
    assert {b: blob.content for b, blob in w.uow.contents.blobs.blobs.items()} == ciphertexts

    only_new = Documents(w.clock, vault("k2", k2=KEY_2))
    for document_id in documents:
        content = await w.transactions.execute(
            only_new.open_document, c.OpenDocument("anna", document_id, second_factor=True)
        )
        assert content.data == PDF
    shown = await w.transactions.execute(
        only_new.show_message, c.ShowMessage("anna", message.message_id)
    )
    assert shown.text == "Text"


# --- DOC-4 ------------------------------------------------------------------------------


async def test_doc4_turning_it_on_needs_a_verified_email_address() -> None:
    w = world()
    await w.transactions.run(
        lambda uow: w.documents.record_identity([registered("anna", "a@example.org")], uow)
    )
    with pytest.raises(DocumentsError) as refused:
        await w.transactions.execute(
            w.documents.set_email_instead_of_letter, c.SetEmailInsteadOfLetter("anna", True)
        )
    assert refused.value.reason is Reason.NO_VERIFIED_EMAIL
    assert not w.published(ev.EmailInsteadOfLetterActivated)


async def test_doc4_on_and_off_emit_their_events_once_each() -> None:
    w = world()
    await email_instead_of_letter(w)
    await w.transactions.execute(
        w.documents.set_email_instead_of_letter, c.SetEmailInsteadOfLetter("anna", True)
    )
    assert len(w.published(ev.EmailInsteadOfLetterActivated)) == 1
    off = await w.transactions.execute(
        w.documents.set_email_instead_of_letter, c.SetEmailInsteadOfLetter("anna", False)
    )
    assert not off.email_instead_of_letter
    assert len(w.published(ev.EmailInsteadOfLetterDeactivated)) == 1
    events = list(w.uow.events.streams["mailbox-anna"])
    assert [e.aggregate_version for e in events] == [1, 2]


async def test_doc4_documents_go_to_the_mailbox_while_on_by_post_while_off() -> None:
    w = world()
    by_post = await deliver(w, title="Vorher")
    await email_instead_of_letter(w)
    by_mail = await deliver(w, title="Danach")
    deliveries = {a.document_id: a.delivery for a in w.published(ev.DocumentAvailable)}
    assert deliveries == {by_post: ev.DocumentDelivery.POST, by_mail: ev.DocumentDelivery.MAILBOX}
    # Both are in the archive either way.
    assert (await listing(w)).total == 2


async def test_doc4_written_form_documents_go_by_post_whatever_the_setting() -> None:
    w = world()
    off = await deliver(w, written_form=True, title="Kündigung")
    await email_instead_of_letter(w)
    on = await deliver(w, written_form=True, title="Kündigung")
    announced = {a.document_id: a for a in w.published(ev.DocumentAvailable)}
    for document_id in (off, on):
        assert announced[document_id].delivery is ev.DocumentDelivery.POST
        assert announced[document_id].written_form
    printed = await w.transactions.execute(w.documents.open_for_print, c.OpenForPrint(on))
    assert printed.data == PDF


async def test_doc4_an_unverified_new_address_sends_documents_by_post_until_verified() -> None:
    w = world()
    await email_instead_of_letter(w)
    await w.transactions.run(
        lambda uow: w.documents.record_identity([contact_changed("anna", "neu@example.org")], uow)
    )
    assert (await deliver(w)) in {
        a.document_id for a in w.published(ev.DocumentAvailable)
        if a.delivery is ev.DocumentDelivery.POST
    }  # fmt: skip
    await w.transactions.run(
        lambda uow: w.documents.record_identity([email_verified("anna", "neu@example.org")], uow)
    )
    mailbox = await deliver(w)
    assert w.published(ev.DocumentAvailable)[-1].document_id == mailbox
    assert w.published(ev.DocumentAvailable)[-1].delivery is ev.DocumentDelivery.MAILBOX


async def test_doc4_id9_account_cancellation_turns_it_off_and_it_cannot_be_turned_on() -> None:
    w = world()
    await email_instead_of_letter(w)
    await w.transactions.run(
        lambda uow: w.documents.record_identity([account_cancelled("anna")], uow)
    )
    assert len(w.published(ev.EmailInsteadOfLetterDeactivated)) == 1
    assert not w.uow.preferences.rows["anna"].email_instead_of_letter
    with pytest.raises(DocumentsError) as refused:
        await w.transactions.execute(
            w.documents.set_email_instead_of_letter, c.SetEmailInsteadOfLetter("anna", True)
        )
    assert refused.value.reason is Reason.ACCOUNT_CANCELLED


async def test_doc4_cancellation_without_the_option_emits_nothing() -> None:
    w = world()
    await w.transactions.run(
        lambda uow: w.documents.record_identity([account_cancelled("anna")], uow)
    )
    assert not w.uow.events.published


# --- DOC-5 ------------------------------------------------------------------------------


async def test_doc5_the_notice_comes_with_the_stored_document_never_with_a_sensitive_title() -> (
    None
):
    w = world()
    await email_instead_of_letter(w)
    document_id = await deliver(w, category="health-benefit", sensitive=True,
                                title="Befund Kniearthroskopie")  # fmt: skip
    [notice] = w.published(ev.DocumentAvailable)
    assert notice.document_id == document_id
    assert notice.sensitive
    assert notice.title == SENSITIVE_TITLE
    assert "Knie" not in notice.model_dump_json()
    # Published in the transaction that stored the content: it can be opened.
    assert w.uow.documents.rows[document_id].content.blob_id in w.uow.contents.blobs.blobs


async def test_doc5_a_refused_document_is_never_announced() -> None:
    w = world()
    with pytest.raises(DocumentsError):
        await deliver(w, content=EXE)
    assert not w.published(ev.DocumentAvailable)
