"""CT-4/NT-2: a move (identity's AddressChanged) is confirmed by letter to the OLD postal
address and told by e-mail to the verified address on file, neither naming the new address
(NT-5, as ID-8: the new value never goes to the old contact point); the notifier's view
then holds the new address (NT-3); one letter and one e-mail per change (NT-4); German
texts without sensitive data (NT-5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from contracts_schemas.common import PostalAddress
from notifier.domain.contacts import apply
from notifier.domain.guard import SensitiveContentError
from notifier.domain.messages import ChannelKind, MessageKind, OutgoingMessage, postal_recipient
from notifier.domain.plan import plan_messages, withheld_values
from notifier_handlers import handlers

BERLIN = PostalAddress(
    recipient="Erika Mustermann", street="Lindenallee 5", postal_code="10115", city="Berlin"
)


def by_channel(messages: list[OutgoingMessage]) -> dict[ChannelKind, OutgoingMessage]:
    channels = {m.channel: m for m in messages}
    assert len(channels) == len(messages), messages
    return channels


# ------------------------------------------------------------------------ the plan


def test_nt2_a_move_is_confirmed_by_letter_to_the_old_address_without_the_new_one(ev):
    moved = ev.address_changed(BERLIN)

    letter = by_channel(plan_messages(moved, ev.view()))[ChannelKind.LETTER]

    assert letter.kind is MessageKind.ADDRESS_CHANGED
    assert letter.template == "letter/address_changed.txt"
    assert letter.postal_address == ev.address  # Heidestraße 17, Köln: where she lived
    assert letter.recipient == postal_recipient(ev.address)
    assert letter.event_id == moved.event_id
    assert letter.context == {
        "name": "Erika Mustermann",
        "changed_at": moved.occurred_at.isoformat(),
    }
    assert letter.not_after == moved.occurred_at + timedelta(days=30)


def test_nt2_a_move_is_told_by_email_to_the_verified_address_without_the_new_address(ev):
    moved = ev.address_changed(BERLIN)

    email = by_channel(plan_messages(moved, ev.view()))[ChannelKind.EMAIL]

    assert email.kind is MessageKind.ADDRESS_CHANGED
    assert email.recipient == "erika.mustermann@example.org"
    assert email.context == {
        "name": "Erika Mustermann",
        "changed_at": moved.occurred_at.isoformat(),
        "letter_to_old_address": True,
    }
    assert email.not_after == moved.occurred_at + timedelta(days=7)


def test_nt2_no_email_to_an_address_that_was_never_verified(ev):
    messages = plan_messages(ev.address_changed(BERLIN), ev.view(verified=False))

    assert [m.channel for m in messages] == [ChannelKind.LETTER]


def test_nt2_without_an_old_address_there_is_no_letter_only_the_email(ev):
    view = ev.view().model_copy(update={"address": None})

    (email,) = plan_messages(ev.address_changed(BERLIN), view)

    assert email.channel is ChannelKind.EMAIL
    assert email.context["letter_to_old_address"] is False


def test_nt2_a_move_of_a_customer_the_notifier_does_not_know_plans_nothing(ev):
    assert plan_messages(ev.address_changed(BERLIN), None) == []


def test_nt2_the_address_already_known_is_no_move(ev):
    same = ev.address.model_copy(update={"street": "  heidestraße   17", "city": "KÖLN"})

    assert plan_messages(ev.address_changed(same), ev.view()) == []


def test_nt2_after_a_cancellation_the_letter_still_goes_but_no_email(ev):
    view = ev.view(ev.cancelled())

    messages = plan_messages(ev.address_changed(BERLIN), view)

    assert [m.channel for m in messages] == [ChannelKind.LETTER]


def test_nt3_once_folded_the_view_holds_the_new_address_and_plans_nothing_again(ev):
    """The old address is the view's before the fold: intake plans first. A view that
    folded the event (or a newer identity event) has no old address for it any more."""
    moved = ev.address_changed(BERLIN)
    folded = apply(ev.view(), moved)

    assert folded.address == BERLIN
    assert plan_messages(moved, folded) == []


def test_nt3_a_stale_move_never_confirms_an_address_since_left(ev):
    first, back = ev.address_changed(BERLIN), ev.address_changed(ev.address)
    view = apply(apply(ev.view(), first), back)

    assert plan_messages(first, view) == []


def test_nt4_planning_the_same_move_again_gives_the_same_keys(ev):
    moved, view = ev.address_changed(BERLIN), ev.view()

    keys = [m.message_key for m in plan_messages(moved, view)]

    assert len(keys) == 2
    assert [m.message_key for m in plan_messages(moved, view)] == keys


def test_nt5_the_new_street_is_withheld_from_every_text_of_a_move(ev):
    assert "Lindenallee 5" in withheld_values(ev.address_changed(BERLIN))


# ----------------------------------------------------------------------- the texts


def test_nt5_the_letter_is_german_and_does_not_tell_the_old_address_the_new_one(ev, renderer):
    moved = ev.address_changed(BERLIN)
    letter = by_channel(plan_messages(moved, ev.view()))[ChannelKind.LETTER]

    rendered = renderer.render(letter, withheld=withheld_values(moved))

    assert rendered.subject == "Bestätigung Ihrer Adressänderung"
    assert rendered.html is None
    assert rendered.text.startswith("Guten Tag Erika Mustermann,")
    assert "am 02.03.2026 wurde uns mitgeteilt" in rendered.text
    for part in ("Lindenallee", "10115", "Berlin"):
        assert part not in rendered.text
    assert "an Ihre bisherige Anschrift" in rendered.text
    assert "Heidestraße" not in rendered.text  # the old address is the envelope's, not the text's
    assert "0800 4520104" in rendered.text


def test_nt5_the_email_tells_the_change_but_not_the_new_address(ev, renderer):
    moved = ev.address_changed(BERLIN)
    email = by_channel(plan_messages(moved, ev.view()))[ChannelKind.EMAIL]

    rendered = renderer.render(email, withheld=withheld_values(moved))

    assert rendered.subject == "Ihre Anschrift wurde geändert"
    assert "am 02.03.2026 um 14:35 Uhr wurde in Meine Allianz ein Umzug gemeldet" in rendered.text
    assert "Bestätigung per Brief an Ihre bisherige Anschrift" in rendered.text
    for part in ("Lindenallee", "10115", "Berlin"):
        assert part not in f"{rendered.subject}\n{rendered.text}\n{rendered.html}"


def test_nt5_the_new_street_in_an_email_is_refused_by_the_guard(ev, renderer):
    moved = ev.address_changed(BERLIN)
    email = by_channel(plan_messages(moved, ev.view()))[ChannelKind.EMAIL]
    leaking = email.model_copy(update={"context": {**email.context, "name": "Lindenallee 5"}})

    with pytest.raises(SensitiveContentError):
        renderer.render(leaking, withheld=withheld_values(moved))


# ---------------------------------------------------------------------- the intake


async def test_nt2_nt3_intake_plans_the_letter_to_the_old_address_then_folds_the_new_one(ev):
    h = handlers(ev.now)
    moved = ev.address_changed(BERLIN)

    await h.consume(ev.registration, ev.verification, moved)

    records = {r.channel: r for r in await h.deliveries()}
    assert set(records) == {ChannelKind.LETTER, ChannelKind.EMAIL}
    assert {r.kind for r in records.values()} == {MessageKind.ADDRESS_CHANGED}
    assert records[ChannelKind.LETTER].recipient == "51147 de"  # Köln, the old address
    assert records[ChannelKind.EMAIL].recipient == "e***@example.org"
    assert all(r.has_text for r in records.values())
    views = await h.uow.contacts.read([ev.customer_id])
    assert views[ev.customer_id].address == BERLIN


async def test_nt4_a_move_consumed_twice_stores_one_letter_and_one_email(ev):
    """Past the inbox (a purged inbox, a rebuild): the stale event plans nothing, and the
    message keys would absorb it anyway."""
    h = handlers(ev.now)
    moved = ev.address_changed(BERLIN)
    await h.consume(ev.registration, ev.verification, moved)

    await h.consume(moved)

    records = await h.deliveries()
    assert len(records) == 2
    for record in records:
        assert await h.statuses(record.delivery.message_key) == ["queued"]
