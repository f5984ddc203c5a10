"""NT-3: the notifier's own contact view, folded from identity and claims events."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from contracts_schemas.common import NotificationChannel, PostalAddress
from contracts_schemas.documents import (
    EmailInsteadOfLetterActivated,
    EmailInsteadOfLetterDeactivated,
)
from notifier.domain.contacts import MAX_WAITING, ContactView, apply, wait, waiting_events


def test_nt3_registration_creates_the_view_with_name_email_mobile_and_address(ev):
    view = apply(None, ev.registered())

    assert view.customer_id == ev.customer_id
    assert view.name == "Erika Mustermann"
    assert view.email == "Erika.Mustermann@example.org"
    assert view.mobile == "0151 2345678"
    assert view.address == ev.address
    assert not view.cancelled


def test_nt3_contact_change_replaces_only_the_values_it_carries(ev):
    view = ev.view(ev.contact_changed(mobile="+49 170 1111111", previous_mobile="0151 2345678"))

    assert view.mobile == "+49 170 1111111"
    assert view.email == "Erika.Mustermann@example.org"


def test_nt3_address_change_replaces_the_postal_address(ev):
    moved = PostalAddress(
        recipient="Erika Mustermann", street="Domstraße 1", postal_code="50667", city="Köln"
    )
    assert ev.view(ev.address_changed(moved)).address == moved


def test_id9_cancellation_marks_the_view_but_keeps_the_email_for_the_confirmation(ev):
    view = ev.view(ev.cancelled())

    assert view.cancelled
    assert view.email == "Erika.Mustermann@example.org"


def test_cl5_claim_reported_records_the_channel_chosen_at_reporting(ev):
    view = ev.view(ev.claim_reported("claim-7", NotificationChannel.SMS))

    assert view.channel_for_claim("claim-7") is NotificationChannel.SMS


def test_cl5_a_later_choice_overrides_the_channel_of_that_claim_only(ev):
    view = ev.view(
        ev.claim_reported("claim-1", NotificationChannel.EMAIL),
        ev.claim_reported("claim-2", NotificationChannel.EMAIL),
        ev.channel_chosen("claim-1", NotificationChannel.SMS),
    )

    assert view.channel_for_claim("claim-1") is NotificationChannel.SMS
    assert view.channel_for_claim("claim-2") is NotificationChannel.EMAIL


def test_cl5_an_unknown_claim_defaults_to_email(ev):
    assert ev.view().channel_for_claim("never-seen") is NotificationChannel.EMAIL


def test_nt3_claim_choice_arriving_before_registration_survives_the_registration(ev):
    early = apply(None, ev.claim_reported("claim-1", NotificationChannel.SMS))
    assert early.email is None

    view = apply(early, ev.registered())

    assert view.email is not None
    assert view.channel_for_claim("claim-1") is NotificationChannel.SMS


def test_nt3_folding_the_same_event_twice_changes_nothing(ev):
    change = ev.contact_changed(email="neu@example.org", previous_email="erika@example.org")
    once = ev.view(change)

    assert apply(once, change) == once


def test_nt3_a_redelivered_older_identity_event_does_not_overwrite_newer_data(ev):
    first = ev.contact_changed(email="first@example.org")
    second = ev.contact_changed(email="second@example.org")
    view = ev.view(first, second)

    assert apply(view, first).email == "second@example.org"


def test_cl5_a_redelivered_older_channel_choice_does_not_win(ev):
    reported = ev.claim_reported("claim-1", NotificationChannel.EMAIL)
    chosen = ev.channel_chosen("claim-1", NotificationChannel.SMS)
    view = ev.view(reported, chosen)

    assert apply(view, reported).channel_for_claim("claim-1") is NotificationChannel.SMS


def test_nt3_an_event_of_another_customer_is_refused(ev):
    other = ContactView(customer_id="someone-else")
    with pytest.raises(ValueError, match="another customer"):
        apply(other, ev.registered())


def test_nt3_the_view_round_trips_through_json_for_storage(ev):
    view = ev.view(ev.claim_reported("claim-1", NotificationChannel.SMS), ev.cancelled())

    assert ContactView.model_validate_json(view.model_dump_json()) == view


def _preference(ev, activated: bool, at):
    kind = EmailInsteadOfLetterActivated if activated else EmailInsteadOfLetterDeactivated
    return kind(
        event_id=uuid4(),
        aggregate_id=f"mailbox-{ev.customer_id}",
        aggregate_version=1,
        occurred_at=at,
        customer_ids=(ev.customer_id,),
        customer_id=ev.customer_id,
    )


def test_nt3_doc4_email_instead_of_letter_is_folded_from_the_documents_events(ev):
    on = _preference(ev, True, ev.now)
    off = _preference(ev, False, ev.now + timedelta(days=1))

    assert ev.view(on).email_instead_of_letter
    assert not ev.view(on, off).email_instead_of_letter


def test_nt3_doc4_preference_follows_business_time_not_arrival_order(ev):
    on = _preference(ev, True, ev.now)
    off = _preference(ev, False, ev.now + timedelta(days=1))

    view = ev.view(off, on, on)

    assert not view.email_instead_of_letter
    assert view.preference_changed_at == off.occurred_at


def test_id9_doc4_cancellation_ends_email_instead_of_letter_for_good(ev):
    earlier_activation = _preference(ev, True, ev.now - timedelta(days=1))
    cancelled = ev.cancelled()

    view = ev.view(cancelled, earlier_activation)

    assert view.cancelled
    assert not view.email_instead_of_letter


def test_nt3_events_wait_in_the_view_of_an_unknown_customer_the_latest_at_most(ev):
    view = None
    changes = [ev.claim_status() for _ in range(MAX_WAITING + 2)]
    for change in changes:
        view = wait(view, ev.customer_id, change)
        view = wait(view, ev.customer_id, change)  # redelivered

    assert view is not None
    assert not view.known
    assert waiting_events(view) == changes[2:]
    assert apply(view, ev.registration).known
