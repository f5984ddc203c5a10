"""The intake handler on the in-memory unit of work: events in, contact view folded,
messages planned, rendered and stored (NT-2, NT-3, NT-4, NT-5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from contracts_schemas.claims import ClaimStatus
from contracts_schemas.loyalty import PointsCredited
from notifier.domain.delivery import DeliveryStatus
from notifier.domain.messages import ChannelKind, MessageKind
from notifier.handlers.intake import NOTIFIER_EVENT_TYPES, Intake
from notifier_handlers import RefusingRenderer, handlers


async def test_nt2_nt3_a_registration_and_a_claim_status_in_one_batch_queue_one_email(ev):
    h = handlers(ev.now)

    await h.consume(ev.registration, ev.claim_status())

    (record,) = await h.deliveries()
    assert record.kind is MessageKind.CLAIM_STATUS_CHANGED
    assert record.channel is ChannelKind.EMAIL
    assert record.delivery.status is DeliveryStatus.QUEUED
    assert record.recipient == "e***@example.org"
    assert record.has_text
    assert await h.statuses(record.delivery.message_key) == ["queued"]
    views = await h.uow.contacts.read([ev.customer_id])
    assert views[ev.customer_id].email == "Erika.Mustermann@example.org"


async def test_nt4_the_same_event_consumed_twice_stores_one_message(ev):
    """Past the inbox (a purged inbox, a rebuild): the message key makes it a no-op."""
    h = handlers(ev.now)
    changed = ev.claim_status()

    await h.consume(ev.registration, changed)
    await h.consume(changed)

    (record,) = await h.deliveries()
    assert await h.statuses(record.delivery.message_key) == ["queued"]


async def test_nt3_a_batch_is_applied_in_business_time_not_arrival_order(ev):
    """The claim notice happened before the e-mail change, though it arrives after it in the
    batch (another topic): it goes to the address valid then."""
    h = handlers(ev.now)
    await h.consume(ev.registration)
    earlier = ev.claim_status(occurred_at=ev.now - timedelta(minutes=5))
    change = ev.contact_changed(email="neu@example.org", previous_email=ev.registration.email)

    await h.consume(change, earlier)

    records = await h.deliveries()
    claim_notice = next(r for r in records if r.kind is MessageKind.CLAIM_STATUS_CHANGED)
    assert claim_notice.recipient == "e***@example.org"  # erika.mustermann@, not neu@
    views = await h.uow.contacts.read([ev.customer_id])
    assert views[ev.customer_id].email == "neu@example.org"


async def test_nt2_a_notice_for_a_customer_not_known_yet_is_not_planned(ev):
    h = handlers(ev.now)

    await h.consume(ev.claim_status())

    assert await h.deliveries() == []


async def test_cl5_nt3_a_claim_read_before_its_customer_is_emailed_once_the_registration_arrives(
    ev,
):
    """A backlog on identity's topic: the claim and its status changes are read first; the
    notices wait in the contact view and go out when the registration is folded."""
    h = handlers(ev.now)
    first, second = ev.claim_status(), ev.claim_status(new_status=ClaimStatus.ASSESSMENT)

    await h.consume(ev.claim_reported(), first)
    await h.consume(second)
    assert await h.deliveries() == []

    await h.consume(ev.registration)

    records = await h.deliveries()
    assert sorted(r.event_id for r in records) == sorted([first.event_id, second.event_id])
    assert {(r.kind, r.channel) for r in records} == {
        (MessageKind.CLAIM_STATUS_CHANGED, ChannelKind.EMAIL)
    }
    assert all(r.recipient == "e***@example.org" for r in records)
    views = await h.uow.contacts.read([ev.customer_id])
    assert views[ev.customer_id].waiting == ()


async def test_nt3_a_notice_that_waited_is_stored_once_however_often_its_event_arrives(ev):
    h = handlers(ev.now)
    changed = ev.claim_status()

    await h.consume(changed)
    await h.consume(changed)
    await h.consume(ev.registration)
    await h.consume(changed)

    (record,) = await h.deliveries()
    assert record.event_id == changed.event_id


async def test_nt2_a_known_customer_without_the_means_of_a_message_gets_none_later_either(ev):
    """Only customers the notifier does not know yet make a notice wait: a known one that
    cannot be reached that way (no e-mail verified for a security notice) gets none."""
    h = handlers(ev.now)
    await h.consume(ev.registration)

    await h.consume(ev.locked())
    await h.consume(ev.verification)

    assert await h.deliveries() == []
    views = await h.uow.contacts.read([ev.customer_id])
    assert views[ev.customer_id].waiting == ()


async def test_nt2_events_the_notifier_does_not_act_on_change_nothing(ev):
    h = handlers(ev.now)
    credited = PointsCredited.model_construct(customer_id=ev.customer_id)
    assert not isinstance(credited, NOTIFIER_EVENT_TYPES)

    await h.consume(credited)

    assert await h.deliveries() == []
    assert await h.uow.contacts.read([ev.customer_id]) == {}


async def test_id9_the_cancellation_confirmation_goes_to_the_email_known_before(ev):
    h = handlers(ev.now)
    await h.consume(ev.registration)

    await h.consume(ev.cancelled(), ev.claim_status())

    (record,) = await h.deliveries()
    assert record.kind is MessageKind.ACCOUNT_CANCELLED
    views = await h.uow.contacts.read([ev.customer_id])
    assert views[ev.customer_id].cancelled


async def test_nt5_a_text_the_guard_refuses_is_stored_dead_without_text(ev):
    h = handlers(ev.now)
    h.intake = Intake(clock=h.clock, renderer=RefusingRenderer())

    await h.consume(ev.registration, ev.claim_status())

    (record,) = await h.deliveries()
    assert record.delivery.status is DeliveryStatus.DEAD
    assert record.delivery.last_error == "nt5_guard: iban"
    assert not record.has_text
    assert await h.statuses(record.delivery.message_key) == ["dead"]
    assert await h.claim() == []


async def test_nt3_a_failing_batch_leaves_no_trace(ev):
    """The intake's effects are one transaction: a batch that fails stores nothing."""
    h = handlers(ev.now)

    async def fail_after_intake(uow):
        await h.intake.handle([ev.registration, ev.claim_status()], uow)
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        await h.transactions.run(fail_after_intake)

    assert await h.deliveries() == []
    assert await h.uow.contacts.read([ev.customer_id]) == {}


async def test_id1_a_registration_without_an_account_is_answered_without_a_contact_view(ev):
    """RegistrationNotCompleted has no customer: no view is read, locked or created."""
    h = handlers(ev.now)
    event = ev.registration_not_completed()

    await h.consume(event)

    (record,) = await h.deliveries()
    assert record.kind is MessageKind.REGISTRATION_NOT_COMPLETED
    assert record.customer_id == event.aggregate_id
    assert await h.uow.contacts.read([event.aggregate_id]) == {}


async def test_id1_id4_the_lock_notice_follows_the_verification_in_the_same_batch(ev):
    h = handlers(ev.now)
    unverified = handlers(ev.now)
    locked = ev.locked()

    await h.consume(ev.registration, ev.verification, locked)
    await unverified.consume(ev.registration, locked)

    (record,) = await h.deliveries()
    assert record.kind is MessageKind.SECURITY_NOTICE
    assert record.recipient == "e***@example.org"
    assert await unverified.deliveries() == []


async def test_doc4_a_post_document_is_queued_as_a_letter_without_fetching_anything(ev):
    """The intake only plans the letter; the document is fetched by the worker."""
    from contracts_schemas.documents import DocumentDelivery

    h = handlers(ev.now)

    await h.consume(ev.registration, ev.document(delivery=DocumentDelivery.POST))

    (record,) = await h.deliveries()
    assert record.kind is MessageKind.DOCUMENT_LETTER
    assert record.channel is ChannelKind.LETTER
    assert h.channel.sent == []
