"""NT-5: German templates, one per message kind; formal "Sie"; German dates and money."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from contracts_schemas.common import NotificationChannel
from notifier.adapters.render import (
    Renderer,
    RenderError,
    RenderSettings,
    de_date,
    de_datetime,
    de_int,
    de_time,
    eur,
)
from notifier.adapters.sms_http import sms_segments
from notifier.domain.contacts import apply
from notifier.domain.messages import ChannelKind, MessageKind, OutgoingMessage, RenderedMessage
from notifier.domain.plan import plan_messages, withheld_values


def render_one(renderer: Renderer, event, view) -> tuple[OutgoingMessage, RenderedMessage]:
    (message,) = plan_messages(event, view)
    return message, renderer.render(message, withheld=withheld_values(event))


def test_nt5_there_is_a_template_for_every_message_kind_and_channel_planned(ev, renderer):
    pairs = {(m.kind, m.channel) for _, m in ev.every_message()}

    assert {kind for kind, _ in pairs} == set(MessageKind)
    for event, message in ev.every_message():
        rendered = renderer.render(message, withheld=withheld_values(event))
        assert rendered.text.strip()
        if message.channel is not ChannelKind.SMS:
            assert rendered.subject


INFORMAL = re.compile(r"\b(du|dein\w*|dich|dir|euch|euer)\b", re.IGNORECASE)


def test_nt5_every_text_addresses_the_customer_formally_with_sie(ev, renderer):
    for event, message in ev.every_message():
        rendered = renderer.render(message, withheld=withheld_values(event))
        text = f"{rendered.subject}\n{rendered.text}"
        assert not INFORMAL.search(text), (message.kind, INFORMAL.search(text))
        assert re.search(r"\b(Sie|Ihr\w*)\b", text), message.kind


def test_cl4_claim_status_email_is_german_with_status_and_expected_completion(ev, renderer):
    _, rendered = render_one(renderer, ev.claim_status(), ev.view())

    assert rendered.subject == "Neuer Bearbeitungsstand zu Ihrem Vorgang SCH-2026-000123"
    assert rendered.text.startswith("Guten Tag Erika Mustermann,")
    assert "Neuer Stand: Unterlagen angefordert" in rendered.text
    assert "Voraussichtlich abgeschlossen bis: 31.03.2026" in rendered.text
    assert "Mit freundlichen Grüßen" in rendered.text
    assert rendered.html is not None
    assert '<html lang="de">' in rendered.html


def test_cl4_without_an_expected_completion_date_the_line_is_left_out(ev, renderer):
    _, rendered = render_one(renderer, ev.claim_status(expected_completion_date=None), ev.view())

    assert "Voraussichtlich" not in rendered.text


def test_cl5_claim_status_sms_is_one_gsm7_segment(ev, renderer):
    view = ev.view(ev.claim_reported("claim-1", NotificationChannel.SMS))
    message, rendered = render_one(renderer, ev.claim_status("claim-1"), view)

    assert message.channel is ChannelKind.SMS
    assert rendered.subject == ""
    assert rendered.text.strip() == (
        "Meine Allianz: Neuer Stand zu Ihrem Vorgang SCH-2026-000123: Unterlagen angefordert. "
        "Voraussichtlich abgeschlossen bis 31.03.2026."
    )
    assert sms_segments(rendered.text.strip()).segments == 1


def test_nt5_every_sms_fits_one_segment(ev, renderer):
    for event, message in ev.every_message():
        if message.channel is ChannelKind.SMS:
            text = renderer.render(message, withheld=withheld_values(event)).text.strip()
            segments = sms_segments(text)
            assert segments.encoding == "text", message.kind
            assert segments.segments == 1, (message.kind, segments)


def test_doc5_document_notice_names_the_title_of_an_ordinary_document(ev, renderer):
    _, rendered = render_one(renderer, ev.document(), ev.view())

    assert rendered.subject == "Neues Dokument in Ihrem Postfach"
    assert "ein neues Dokument für Sie bereit: „Nachtrag zum Versicherungsschein“." in rendered.text


def test_doc5_sensitive_document_notice_says_only_ein_neues_dokument(ev, renderer):
    event = ev.document(sensitive=True, title="Leistungsabrechnung Psychotherapie")

    _, rendered = render_one(renderer, event, ev.view())

    assert "ein neues Dokument für Sie bereit." in rendered.text
    assert "Psychotherapie" not in rendered.text
    assert "2-Faktor-Authentifizierung" in rendered.text  # DOC-3: how to open it


def test_id3_activation_letter_names_the_code_and_its_validity(ev, renderer):
    _, rendered = render_one(renderer, ev.activation_code(), ev.view())

    assert rendered.subject == "Ihr Aktivierungscode"
    assert "Ihr Aktivierungscode: X7K2-9PQ4" in rendered.text
    assert "gültig bis zum 31.05.2026" in rendered.text
    assert rendered.html is None


def test_id5_login_code_sms_shows_code_and_berlin_expiry_time(ev, renderer):
    _, rendered = render_one(renderer, ev.login_code(), ev.view())

    assert rendered.text.strip() == (
        "482913 ist Ihr Anmeldecode für Meine Allianz. Gültig bis 14:40 Uhr. "
        "Geben Sie den Code niemals weiter."
    )


def test_id6_mtan_sms_names_what_is_being_confirmed(ev, renderer):
    _, rendered = render_one(renderer, ev.mtan(purpose="bank_details"), ev.view())

    assert rendered.text.startswith(
        "771204 ist Ihre mTAN für die Änderung Ihrer Bankverbindung in Meine Allianz."
    )


def test_id7_username_reminder_and_password_reset_are_german(ev, renderer):
    _, reminder = render_one(renderer, ev.username_reminder(), ev.view())
    _, reset = render_one(renderer, ev.password_reset(), ev.view())

    assert reminder.subject == "Ihr Benutzername für Meine Allianz"
    assert "\nerika.m\n" in reminder.text
    assert reset.subject == "Passwort für Meine Allianz zurücksetzen"
    assert "https://portal.example.org/passwort/neu?token=q9Zt-3xLw_Vb8" in reset.text
    assert "gültig bis 02.03.2026 um 15:35 Uhr" in reset.text


def test_loy5_points_warning_shows_points_and_expiry_date_in_german_format(ev, renderer):
    _, rendered = render_one(renderer, ev.points_warning(points=12500), ev.view())

    assert rendered.subject == "Ihre Punkte im Vorteilsprogramm verfallen bald"
    assert "mit Ablauf des 31.12.2026 verfallen 12.500 Punkte" in rendered.text


def test_loy5_a_single_point_is_singular(ev, renderer):
    _, rendered = render_one(renderer, ev.points_warning(points=1), ev.view())

    assert "verfallen 1 Punkt auf" in rendered.text


def test_id9_cancellation_confirmation_explains_the_consequences(ev, renderer):
    _, rendered = render_one(renderer, ev.cancelled(), ev.view())

    assert rendered.subject == "Bestätigung Ihrer Kündigung von Meine Allianz"
    assert "Kündigung Ihres Zugangs zu Meine Allianz vom 02.03.2026" in rendered.text
    assert "Vorteilsprogramm ist beendet" in rendered.text
    assert "„E-Mail statt Brief“ ist beendet" in rendered.text


def test_id8_contact_change_email_says_what_changed_and_when(ev, renderer):
    event = ev.contact_changed(email="neu@example.org", previous_email="alt@example.org")

    _, rendered = render_one(renderer, event, ev.view())

    assert rendered.subject == "Ihre Kontaktdaten in Meine Allianz wurden geändert"
    assert "am 02.03.2026 um 14:35 Uhr wurde Ihre E-Mail-Adresse" in rendered.text
    assert "bisherige E-Mail-Adresse" in rendered.text


def test_nt5_names_are_escaped_in_html_but_kept_literal_in_plain_text(ev, renderer):
    view = apply(None, ev.registered(first_name="<b>Erika</b>", last_name="Müller & Söhne"))
    (message,) = plan_messages(ev.claim_status(), view)

    rendered = renderer.render(message)

    assert "Guten Tag <b>Erika</b> Müller & Söhne," in rendered.text
    assert rendered.html is not None
    assert "&lt;b&gt;Erika&lt;/b&gt; Müller &amp; Söhne" in rendered.html
    assert "<b>Erika</b>" not in rendered.html


def test_nt5_greeting_without_a_known_name_is_neutral(ev, renderer):
    (message,) = plan_messages(ev.password_reset(), None)

    assert renderer.render(message).text.startswith("Guten Tag,\n")


def test_nt5_a_missing_context_value_is_an_error_not_an_empty_string(ev, renderer):
    (message,) = plan_messages(ev.claim_status(), ev.view())
    broken = message.model_copy(update={"context": {"name": "Erika"}})

    with pytest.raises(RenderError, match="claim_status_changed"):
        renderer.render(broken)


def test_nt5_an_email_has_a_plain_text_signature_delimiter(ev, renderer):
    _, rendered = render_one(renderer, ev.claim_status(), ev.view())

    assert "\n-- \nDiese E-Mail wurde automatisch erstellt." in rendered.text


def test_nt1_shared_wording_is_configured_per_environment(ev):
    settings = RenderSettings(portal_name="Kundenportal Test", service_phone="0800 000000")
    (message,) = plan_messages(ev.cancelled(), ev.view())

    rendered = Renderer(settings).render(message)

    assert rendered.subject == "Bestätigung Ihrer Kündigung von Kundenportal Test"
    assert "0800 000000" in rendered.text


# ------------------------------------------------------------------------ filters


def test_dates_are_shown_as_dd_mm_yyyy_in_the_berlin_calendar():
    assert de_date(date(2026, 3, 1)) == "01.03.2026"
    assert de_date("2026-12-31") == "31.12.2026"
    # 23:30 UTC on 31 Dec is already 1 Jan in Berlin.
    assert de_date(datetime(2025, 12, 31, 23, 30, tzinfo=UTC)) == "01.01.2026"


def test_times_follow_berlin_summer_and_winter_time():
    assert de_time("2026-01-15T12:00:00+00:00") == "13:00"
    assert de_time("2026-07-15T12:00:00+00:00") == "14:00"
    assert de_datetime(datetime(2026, 7, 15, 12, 0, tzinfo=UTC)) == "15.07.2026 um 14:00 Uhr"


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        de_time("2026-01-15T12:00:00")


def test_money_is_eur_from_integer_cents_in_german_format():
    assert eur(0) == "0,00 €"
    assert eur(5) == "0,05 €"
    assert eur(123456) == "1.234,56 €"
    assert eur(-99_999_900) == "-999.999,00 €"
    assert de_int(1000) == "1.000"


# ------------------------------------------------------ issue 9/10: the new messages


def slip(ev, claim_id: str = "claim-1"):
    from contracts_schemas.claims import ClaimStatus

    return ev.claim_status(
        claim_id,
        old_status=ClaimStatus.IN_REVIEW,
        new_status=ClaimStatus.IN_REVIEW,
        expected_completion_date=date(2026, 4, 14),
        previous_expected_completion_date=date(2026, 3, 31),
    )


def test_cl3_a_slip_email_says_the_claim_takes_longer_with_old_and_new_date(ev, renderer):
    _, rendered = render_one(renderer, slip(ev), ev.view())

    assert rendered.subject == "Neuer voraussichtlicher Abschluss Ihres Vorgangs SCH-2026-000123"
    assert "dauert länger als zuletzt angekündigt" in rendered.text
    assert "unverändert: In Bearbeitung" in rendered.text
    assert "14.04.2026 (bisher angekündigt: 31.03.2026)" in rendered.text


def test_cl3_a_slip_sms_is_one_gsm7_segment(ev, renderer):
    view = ev.view(ev.claim_reported("claim-1", NotificationChannel.SMS))

    _, rendered = render_one(renderer, slip(ev), view)

    assert rendered.text.strip() == (
        "Meine Allianz: Ihr Vorgang SCH-2026-000123 dauert länger. Voraussichtlich "
        "abgeschlossen bis 14.04.2026 (bisher 31.03.2026)."
    )
    assert sms_segments(rendered.text.strip()).segments == 1


def test_cl4_a_status_change_with_a_slipped_date_names_both(ev, renderer):
    from contracts_schemas.claims import ClaimStatus

    event = ev.claim_status(
        new_status=ClaimStatus.ASSESSMENT,
        expected_completion_date=date(2026, 4, 14),
        previous_expected_completion_date=date(2026, 3, 31),
    )

    _, rendered = render_one(renderer, event, ev.view())

    assert "Neuer Stand: In Begutachtung" in rendered.text
    assert "14.04.2026 (bisher angekündigt: 31.03.2026)" in rendered.text


def test_id1_verification_email_shows_the_code_and_its_validity(ev, renderer):
    _, rendered = render_one(renderer, ev.email_code(), ev.view(verified=False))

    assert rendered.subject == "Bestätigen Sie Ihre E-Mail-Adresse für Meine Allianz"
    assert "Ihr Bestätigungscode: K7QM4TZ9XA2B" in rendered.text
    assert "gültig bis 03.03.2026 um 14:35 Uhr" in rendered.text


def test_id1_registration_answer_explains_the_taken_username_without_naming_it(ev, renderer):
    event = ev.registration_not_completed(username="Erika-Mustermann-1980")

    _, rendered = render_one(renderer, event, None)

    assert rendered.text.startswith("Guten Tag,")
    assert "Benutzername bereits vergeben" in rendered.text
    assert "Erika-Mustermann-1980" not in rendered.text + (rendered.html or "")
    assert "Es wurde kein Zugang angelegt." in rendered.text


@pytest.mark.parametrize(
    ("make", "subject", "phrase"),
    [
        (
            lambda ev: ev.locked(),
            "Ihr Zugang zu Meine Allianz ist vorübergehend gesperrt",
            "Ab 02.03.2026 um 15:05 Uhr können Sie sich wieder anmelden.",
        ),
        (
            lambda ev: ev.password_changed("change"),
            "Ihr Passwort für Meine Allianz wurde geändert",
            "am 02.03.2026 um 14:35 Uhr wurde das Passwort",
        ),
        (
            lambda ev: ev.password_changed("reset"),
            "Ihr Passwort für Meine Allianz wurde zurückgesetzt",
            "über „Passwort vergessen“ neu vergeben",
        ),
        (
            lambda ev: ev.two_factor_enabled(),
            "2-Faktor-Authentifizierung eingeschaltet",
            "(Mobilfunknummer +49*******5678)",
        ),
        (
            lambda ev: ev.two_factor_disabled(),
            "2-Faktor-Authentifizierung ausgeschaltet",
            "ohne SMS-Code möglich",
        ),
        (
            lambda ev: ev.device_bound(),
            "Neues Gerät für Meine Allianz angemeldet",
            "ein neues Gerät („iPhone von Erika“)",
        ),
        (
            lambda ev: ev.device_revoked(),
            "Gerät aus Meine Allianz entfernt",
            "wurde ein Gerät aus Ihrem Zugang",
        ),
    ],
)
def test_id4_id5_security_notices_are_german_and_say_what_happened(
    ev, renderer, make, subject, phrase
):
    _, rendered = render_one(renderer, make(ev), ev.view())

    assert rendered.subject == subject
    assert rendered.text.startswith("Guten Tag Erika Mustermann,")
    assert phrase in rendered.text
    assert "Sie haben das nicht veranlasst?" in rendered.text


def test_doc4_document_letter_encloses_the_document_and_says_why_it_is_on_paper(ev, renderer):
    from contracts_schemas.documents import DocumentDelivery

    event = ev.document(delivery=DocumentDelivery.POST, written_form=True)

    message, rendered = render_one(renderer, event, ev.view())

    assert message.channel is ChannelKind.LETTER
    assert rendered.subject == "Nachtrag zum Versicherungsschein"
    assert "das Dokument „Nachtrag zum Versicherungsschein“" in rendered.text
    assert "gesetzlich in Schriftform" in rendered.text
    assert rendered.text.rstrip().endswith("Anlage")


def test_doc4_a_sensitive_document_letter_has_a_neutral_subject(ev, renderer):
    from contracts_schemas.documents import DocumentDelivery

    event = ev.document(delivery=DocumentDelivery.POST, sensitive=True, title="Arztbrief")

    _, rendered = render_one(renderer, event, ev.view())

    assert rendered.subject == "Ein Dokument für Sie"
    assert "Arztbrief" not in rendered.text
