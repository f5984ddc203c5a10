"""NT-2/NT-4: which messages each event triggers, to whom, on which channel, until when."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import uuid4

import pytest
from contracts_schemas.claims import ClaimStatus
from contracts_schemas.common import NotificationChannel
from contracts_schemas.documents import (
    DocumentDelivery,
    EmailInsteadOfLetterActivated,
    SecureMessageAnswered,
)
from contracts_schemas.loyalty import PointsCredited
from notifier.domain.contacts import ContactView, apply
from notifier.domain.messages import ChannelKind, MessageKind, OutgoingMessage, message_key
from notifier.domain.plan import plan_messages, withheld_values
from servicekit.clock import BERLIN


def only(messages: list[OutgoingMessage]) -> OutgoingMessage:
    assert len(messages) == 1, messages
    return messages[0]


# ------------------------------------------------------------------ CL-4/CL-5 claims


def test_nt2_claim_status_change_goes_by_email_when_no_channel_was_chosen(ev):
    message = only(plan_messages(ev.claim_status(), ev.view()))

    assert message.kind is MessageKind.CLAIM_STATUS_CHANGED
    assert message.channel is ChannelKind.EMAIL
    assert message.recipient == "erika.mustermann@example.org"
    assert message.template == "email/claim_status_changed.txt"
    assert message.context["claim_number"] == "SCH-2026-000123"
    assert message.context["new_status"] == "documents_requested"
    assert message.context["expected_completion_date"] == "2026-03-31"


def test_cl5_claim_status_change_goes_by_sms_when_the_customer_chose_sms(ev):
    view = ev.view(ev.claim_reported("claim-1", NotificationChannel.SMS))

    message = only(plan_messages(ev.claim_status("claim-1"), view))

    assert message.channel is ChannelKind.SMS
    assert message.recipient == "+491512345678"
    assert message.template == "sms/claim_status_changed.txt"


def test_cl5_sms_choice_without_a_known_mobile_falls_back_to_email(ev):
    view = apply(None, ev.registered(mobile=None))
    view = apply(view, ev.channel_chosen("claim-1", NotificationChannel.SMS))

    assert only(plan_messages(ev.claim_status("claim-1"), view)).channel is ChannelKind.EMAIL


def test_nt2_claim_status_change_for_an_unknown_customer_sends_nothing(ev):
    assert plan_messages(ev.claim_status(), None) == []


def test_nt4_a_notice_is_stale_after_its_horizon_so_replays_never_mail_the_past(ev):
    message = only(plan_messages(ev.claim_status(), ev.view()))

    assert message.not_after == ev.now + timedelta(days=7)


# ------------------------------------------------------------------------- DOC-5


def test_doc5_new_document_notice_goes_by_email_with_its_title(ev):
    message = only(plan_messages(ev.document(), ev.view()))

    assert message.kind is MessageKind.DOCUMENT_AVAILABLE
    assert message.channel is ChannelKind.EMAIL
    assert message.context["document_title"] == "Nachtrag zum Versicherungsschein"
    assert message.context["needs_second_factor"] is False


def test_doc5_a_sensitive_document_notice_never_carries_its_title(ev):
    event = ev.document(title="Arztbrief Dr. Sommer", category="health_benefit", sensitive=True)

    message = only(plan_messages(event, ev.view()))

    assert message.context["document_title"] is None
    assert message.context["needs_second_factor"] is True
    assert "Arztbrief Dr. Sommer" not in message.model_dump_json()
    assert "Arztbrief Dr. Sommer" in withheld_values(event)


def test_nt5_a_title_with_an_iban_is_dropped_from_the_notice(ev):
    event = ev.document(title="SEPA-Mandat DE89 3704 0044 0532 0130 00")

    assert only(plan_messages(event, ev.view())).context["document_title"] is None


def test_doc4_a_document_delivered_by_post_becomes_a_letter_with_the_document_and_no_email(ev):
    event = ev.document(delivery=DocumentDelivery.POST, written_form=True)

    letter = only(plan_messages(event, ev.view()))

    assert letter.channel is ChannelKind.LETTER
    assert letter.kind is MessageKind.DOCUMENT_LETTER
    assert letter.postal_address == ev.address
    assert letter.document_id == event.document_id
    assert letter.context["document_title"] == "Nachtrag zum Versicherungsschein"
    assert letter.context["written_form"] is True
    assert letter.not_after == ev.now + timedelta(days=30)


def test_doc4_a_document_letter_goes_to_the_address_known_at_that_moment(ev):
    from contracts_schemas.common import PostalAddress

    moved = PostalAddress(recipient="Erika Mustermann", street="Neuweg 1", postal_code="10115",
                          city="Berlin")  # fmt: skip
    view = ev.view(ev.address_changed(moved))

    letter = only(plan_messages(ev.document(delivery=DocumentDelivery.POST), view))

    assert letter.postal_address == moved


def test_doc4_a_sensitive_document_letter_never_names_its_title(ev):
    event = ev.document(delivery=DocumentDelivery.POST, sensitive=True, title="Arztbrief")

    letter = only(plan_messages(event, ev.view()))

    assert letter.context["document_title"] is None
    assert "Arztbrief" in withheld_values(event)


def test_doc4_documents_still_go_by_post_after_the_portal_account_was_cancelled(ev):
    view = ev.view(ev.cancelled())

    letter = only(plan_messages(ev.document(delivery=DocumentDelivery.POST), view))

    assert letter.channel is ChannelKind.LETTER


def test_doc4_no_letter_without_a_known_postal_address(ev):
    assert plan_messages(ev.document(delivery=DocumentDelivery.POST), None) == []


# -------------------------------------------------------------------------- codes


def test_id3_activation_code_goes_by_letter_to_the_address_in_the_event(ev):
    event = ev.activation_code()

    message = only(plan_messages(event, None))

    assert message.channel is ChannelKind.LETTER
    assert message.kind is MessageKind.ACTIVATION_CODE
    assert message.postal_address == event.address
    assert message.context["code"] == "X7K2-9PQ4"
    assert message.context["expires_on"] == "2026-05-31"


def test_id3_an_activation_letter_is_not_printed_when_it_cannot_arrive_before_expiry(ev):
    event = ev.activation_code()

    message = only(plan_messages(event, None))

    assert message.not_after == event.expires_at - timedelta(days=7)


def test_id5_login_code_goes_by_sms_to_the_number_in_the_event_until_it_expires(ev):
    event = ev.login_code(mobile="0049 (0)170 98-76-543")

    message = only(plan_messages(event, ev.view()))

    assert message.channel is ChannelKind.SMS
    assert message.kind is MessageKind.LOGIN_CODE
    assert message.recipient == "+49170987654" + "3"
    assert message.not_after == event.expires_at
    assert message.is_code


def test_id6_mtan_goes_by_sms_with_its_purpose_reduced_to_a_known_key(ev):
    event = ev.mtan(purpose="Change-Password")

    message = only(plan_messages(event, None))

    assert message.kind is MessageKind.MTAN
    assert message.not_after == event.expires_at
    assert message.context["purpose"] == "password"


def test_id6_an_unknown_mtan_purpose_is_never_copied_into_the_sms(ev):
    event = ev.mtan(purpose="Diagnose F32.1 für Frau M.")

    message = only(plan_messages(event, None))

    assert message.context["purpose"] == "other"
    assert "Diagnose F32.1 für Frau M." in withheld_values(event)


# ------------------------------------------------------------------------ ID-7


def test_id7_username_reminder_goes_by_email_to_the_address_in_the_event(ev):
    message = only(plan_messages(ev.username_reminder(email="Other@Example.org"), ev.view()))

    assert message.kind is MessageKind.USERNAME_REMINDER
    assert message.recipient == "other@example.org"
    assert message.context["username"] == "erika.m"


def test_id7_password_reset_email_is_never_sent_after_the_token_expired(ev):
    event = ev.password_reset()

    message = only(plan_messages(event, ev.view()))

    assert message.kind is MessageKind.PASSWORD_RESET
    assert message.not_after == event.expires_at
    assert message.context["reset_url"] == event.reset_url


# ------------------------------------------------------------------------- LOY-5


def test_loy5_points_expiry_warning_goes_by_email(ev):
    message = only(plan_messages(ev.points_warning(), ev.view()))

    assert message.kind is MessageKind.POINTS_EXPIRY_WARNING
    assert message.context == {
        "name": "Erika Mustermann",
        "points": 1500,
        "expires_on": "2026-12-31",
    }


def test_loy5_a_warning_is_pointless_after_the_points_expired(ev):
    event = ev.points_warning(expires_on=date(2026, 3, 10))

    message = only(plan_messages(event, ev.view()))

    assert message.not_after == datetime(2026, 3, 11, tzinfo=BERLIN)


# -------------------------------------------------------------------------- ID-9


def test_id9_cancellation_confirmation_goes_to_the_email_known_at_that_moment(ev):
    cancelled = ev.cancelled()
    before = ev.view()
    after = apply(before, cancelled)

    planned_before = only(plan_messages(cancelled, before))
    planned_after = only(plan_messages(cancelled, after))

    assert planned_before == planned_after
    assert planned_after.kind is MessageKind.ACCOUNT_CANCELLED
    assert planned_after.recipient == "erika.mustermann@example.org"


def test_id9_after_cancellation_no_more_portal_notices_are_sent(ev):
    view = ev.view(ev.cancelled())

    assert plan_messages(ev.claim_status(), view) == []
    assert plan_messages(ev.document(), view) == []
    assert plan_messages(ev.points_warning(), view) == []
    assert plan_messages(ev.password_reset(), view) == []


# ------------------------------------------------------------------ ID-8 contact change


def test_id8_email_change_is_confirmed_to_the_old_address_without_the_new_one(ev):
    event = ev.contact_changed(email="new@example.org", previous_email="Old@Example.org")

    message = only(plan_messages(event, ev.view()))

    assert message.channel is ChannelKind.EMAIL
    assert message.recipient == "old@example.org"
    assert message.context["email_changed"] is True
    assert message.context["mobile_changed"] is False
    assert "new@example.org" not in message.model_dump_json()
    assert "new@example.org" in withheld_values(event)


def test_id8_mobile_change_is_confirmed_by_sms_to_the_old_number_and_by_email(ev):
    event = ev.contact_changed(mobile="+49 170 1111111", previous_mobile="0151 2345678")

    messages = plan_messages(event, ev.view())

    assert {(m.channel, m.recipient) for m in messages} == {
        (ChannelKind.SMS, "+491512345678"),
        (ChannelKind.EMAIL, "erika.mustermann@example.org"),
    }


def test_id8_the_old_email_comes_from_the_view_when_the_event_lacks_it_before_or_after_folding(
    ev,
):
    event = ev.contact_changed(email="new@example.org")
    before = ev.view()
    after = apply(before, event)

    assert only(plan_messages(event, before)).recipient == "erika.mustermann@example.org"
    assert plan_messages(event, after) == []  # old address no longer known: nobody to warn


def test_id8_a_change_to_the_same_value_sends_nothing(ev):
    event = ev.contact_changed(email="ERIKA@example.org", previous_email="erika@example.org")

    assert plan_messages(event, ev.view()) == []


# ----------------------------------------------------------------- NT-4 idempotency


def test_nt4_replanning_the_same_event_yields_the_same_message_keys(ev):
    event = ev.contact_changed(mobile="+49 170 1111111", previous_mobile="0151 2345678")
    view = ev.view()

    assert plan_messages(event, view) == plan_messages(event, view)


def test_nt4_message_key_is_event_id_plus_channel_plus_recipient(ev):
    event = ev.claim_status()
    message = only(plan_messages(event, ev.view()))

    assert message.message_key == message_key(event.event_id, ChannelKind.EMAIL, message.recipient)
    assert message.message_key != message_key(uuid4(), ChannelKind.EMAIL, message.recipient)
    assert message.message_key != message_key(event.event_id, ChannelKind.SMS, message.recipient)
    assert message.message_key != message_key(event.event_id, ChannelKind.EMAIL, "x@example.org")


def test_nt4_message_key_holds_no_personal_data(ev):
    message = only(plan_messages(ev.claim_status(), ev.view()))

    assert "example" not in message.message_key
    assert len(message.message_key) == 36


def test_nt4_each_event_yields_at_most_one_message_per_recipient_and_channel(ev):
    view = ev.view()
    events = [
        ev.claim_status(),
        ev.document(),
        ev.activation_code(),
        ev.login_code(),
        ev.mtan(),
        ev.username_reminder(),
        ev.password_reset(),
        ev.points_warning(),
        ev.contact_changed(
            email="n@example.org",
            previous_email="o@example.org",
            mobile="+4917000000",
            previous_mobile="+4915100000",
        ),
        ev.address_changed(ev.address.model_copy(update={"street": "Lindenallee 5"})),
        ev.cancelled(),
    ]
    for event in events:
        messages = plan_messages(event, view)
        assert messages, type(event).__name__
        pairs = [(m.channel, m.recipient) for m in messages]
        assert len(pairs) == len(set(pairs))


def test_nt4_every_planned_message_round_trips_through_json_for_the_message_store(ev):
    for _, message in ev.every_message():
        restored = OutgoingMessage.model_validate_json(message.model_dump_json())
        assert restored == message
        assert [type(v) for v in restored.context.values()] == [
            type(v) for v in message.context.values()
        ]


# ------------------------------------------------------------------------- others


@pytest.mark.parametrize(
    "make",
    [
        lambda ev: EmailInsteadOfLetterActivated(
            event_id=uuid4(),
            aggregate_id="m",
            aggregate_version=1,
            occurred_at=ev.now,
            customer_id=ev.customer_id,
        ),
        lambda ev: SecureMessageAnswered(
            event_id=uuid4(),
            aggregate_id="m",
            aggregate_version=1,
            occurred_at=ev.now,
            customer_id=ev.customer_id,
            message_id="msg-1",
        ),
        lambda ev: PointsCredited(
            event_id=uuid4(),
            aggregate_id="l",
            aggregate_version=1,
            occurred_at=ev.now,
            customer_id=ev.customer_id,
            lot_id="lot",
            points=10,
            rule="LOY-2",
            credited_on=date(2026, 3, 1),
            expires_on=date(2029, 12, 31),
        ),
        lambda ev: ev.registered(),
        lambda ev: ev.claim_reported(),
    ],
    ids=["email-instead-of-letter", "secure-message", "points-credited", "registered", "reported"],
)
def test_nt2_events_the_notifier_does_not_care_about_yield_no_message(ev, make):
    assert plan_messages(make(ev), ev.view()) == []


def test_nt2_a_view_of_another_customer_is_refused(ev):
    with pytest.raises(ValueError, match="another customer"):
        plan_messages(ev.claim_status(), ContactView(customer_id="someone-else"))


@pytest.mark.parametrize("status", list(ClaimStatus))
def test_cl4_every_claim_status_can_be_announced(ev, status):
    message = only(plan_messages(ev.claim_status(new_status=status), ev.view()))

    assert message.context["new_status"] == status.value


def test_ops1_operators_see_a_masked_recipient_only():
    from notifier.domain.messages import ChannelKind, masked_recipient

    assert masked_recipient(ChannelKind.EMAIL, "erika.m@example.org") == "e***@example.org"
    assert masked_recipient(ChannelKind.SMS, "+4915123456789") == "+49*******6789"
    letter = "erika mustermann | heidestraße 17 | 51147 | köln | de"
    assert masked_recipient(ChannelKind.LETTER, letter) == "51147 de"


# ------------------------------------------------------------------ CL-3 slipped dates


def test_cl3_a_slipped_date_is_a_notice_by_the_chosen_channel(ev):
    view = ev.view(ev.channel_chosen("claim-1", NotificationChannel.SMS))
    slip = ev.claim_status(
        old_status=ClaimStatus.IN_REVIEW,
        new_status=ClaimStatus.IN_REVIEW,
        expected_completion_date=date(2026, 4, 14),
        previous_expected_completion_date=date(2026, 3, 31),
    )

    message = only(plan_messages(slip, view))

    assert message.channel is ChannelKind.SMS
    assert message.context["previous_expected_completion_date"] == "2026-03-31"
    assert message.context["status_changed"] is False


def test_cl3_an_earlier_date_is_not_announced_as_a_slip(ev):
    event = ev.claim_status(
        expected_completion_date=date(2026, 3, 20),
        previous_expected_completion_date=date(2026, 3, 31),
    )

    assert (
        only(plan_messages(event, ev.view())).context["previous_expected_completion_date"] is None
    )


# ------------------------------------------------------------------ ID-1 registration


def test_id1_the_email_verification_code_goes_to_the_address_in_the_event_until_it_expires(ev):
    event = ev.email_code(email="Neu@Example.org")

    message = only(plan_messages(event, ev.view(verified=False)))

    assert message.kind is MessageKind.EMAIL_VERIFICATION_CODE
    assert message.recipient == "neu@example.org"
    assert message.context["code"] == "K7QM4TZ9XA2B"
    assert message.not_after == event.expires_at
    assert message.is_code


def test_id1_a_registration_that_was_not_completed_is_told_to_the_given_address(ev):
    event = ev.registration_not_completed(email="Someone@Example.org")

    message = only(plan_messages(event, None))

    assert message.kind is MessageKind.REGISTRATION_NOT_COMPLETED
    assert message.recipient == "someone@example.org"
    assert message.customer_id == event.aggregate_id  # no account, no customer id
    assert message.context == {"reason": "username_taken"}  # never the username
    assert "erika.m" in withheld_values(event)


def test_id1_an_unknown_reason_is_reduced_to_other(ev):
    message = only(plan_messages(ev.registration_not_completed(reason="<b>spam</b>"), None))

    assert message.context == {"reason": "other"}


def test_id1_a_view_folds_the_verification_of_its_address(ev):
    unverified = apply(None, ev.registration)
    verified = apply(unverified, ev.email_verified("erika.mustermann@EXAMPLE.org"))
    other = apply(unverified, ev.email_verified("someone-else@example.org"))

    assert not unverified.email_verified
    assert verified.email_verified
    assert not other.email_verified


# ------------------------------------------------------------- ID-2/4/5/7 security notices


@pytest.mark.parametrize(
    ("make", "notice"),
    [
        (lambda ev: ev.locked(), "account_locked"),
        (lambda ev: ev.password_changed("change"), "password_changed"),
        (lambda ev: ev.password_changed("reset"), "password_reset"),
        (lambda ev: ev.two_factor_enabled(), "two_factor_enabled"),
        (lambda ev: ev.two_factor_disabled(), "two_factor_disabled"),
        (lambda ev: ev.device_bound(), "device_bound"),
        (lambda ev: ev.device_revoked(), "device_revoked"),
    ],
)
def test_id4_id5_security_events_are_told_by_email_to_the_verified_address(ev, make, notice):
    event = make(ev)

    message = only(plan_messages(event, ev.view()))

    assert message.kind is MessageKind.SECURITY_NOTICE
    assert message.channel is ChannelKind.EMAIL
    assert message.recipient == "erika.mustermann@example.org"
    assert message.context["notice"] == notice
    assert message.not_after == event.occurred_at + timedelta(days=7)
    assert not message.is_code


def test_id1_security_notices_never_go_to_an_unverified_address(ev):
    view = ev.view(verified=False)

    for event in ev.security_events():
        assert plan_messages(event, view) == []


def test_id8_a_changed_address_is_verified_and_gets_security_notices(ev):
    view = ev.view(ev.contact_changed(email="neu@example.org", previous_email="alt@example.org"),
                   verified=False)  # fmt: skip

    assert only(plan_messages(ev.locked(), view)).recipient == "neu@example.org"


def test_id4_the_lock_notice_names_when_the_lock_ends(ev):
    event = ev.locked()

    message = only(plan_messages(event, ev.view()))

    assert message.context["locked_until"] == event.locked_until.isoformat()


def test_id9_no_security_notices_after_cancellation(ev):
    view = ev.view(ev.cancelled())

    for event in ev.security_events():
        assert plan_messages(event, view) == []


def test_nt5_a_device_name_the_scanner_flags_is_left_out_of_the_notice(ev):
    event = ev.device_bound(device_name="DE89 3704 0044 0532 0130 00")

    message = only(plan_messages(event, ev.view()))

    assert message.context["device_name"] is None
    assert "DE89 3704 0044 0532 0130 00" in withheld_values(event)


def test_nt4_a_security_event_applied_twice_plans_the_same_key(ev):
    event = ev.locked()

    assert plan_messages(event, ev.view()) == plan_messages(event, ev.view())
