"""NT-5: no diagnosis, full IBAN or password ever reaches an SMS, e-mail or letter text.

Three layers are tested: the planner's whitelist (sensitive event fields never enter a
context), the renderer's guard (a sensitive value that slips into a rendered text is
refused), and the channels' last check before anything goes on the wire.
"""

from __future__ import annotations

import httpx
import pytest
from contracts_schemas.documents import DocumentDelivery
from contracts_schemas.identity import RegistrationNotCompleted
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import DictLoader
from notifier.adapters.email_smtp import SmtpEmailChannel, SmtpSettings
from notifier.adapters.render import Renderer, RenderError, guard_rendered
from notifier.adapters.sms_http import VonageSmsChannel, VonageSmsSettings
from notifier.domain.contacts import apply
from notifier.domain.guard import SensitiveContentError, ensure_clean, scan
from notifier.domain.messages import ChannelKind, MessageKind, RenderedMessage
from notifier.domain.plan import plan_messages, withheld_values
from servicekit.clock import FixedClock

DIAGNOSIS = "Diagnose: F32.1 Depression"
IBAN = "DE89 3704 0044 0532 0130 00"
PASSWORD = "Geheim!Kennwort-2026"
SECRETS = (DIAGNOSIS, IBAN, PASSWORD)
#: Pieces that identify a leak even when a secret is reformatted.
FRAGMENTS = ("F32.1", "Depression", "3704 0044", "370400440532013000", "Geheim!Kennwort")


def all_text(rendered: RenderedMessage) -> str:
    return "\n".join([rendered.subject, rendered.text, rendered.html or ""])


def assert_no_secret(rendered: RenderedMessage) -> None:
    text = all_text(rendered)
    for fragment in FRAGMENTS:
        assert fragment not in text, fragment


def poisoned_events(ev):
    """Every NT-2 event, with the secrets in every field that is not meant to be shown."""
    secret = " / ".join(SECRETS)
    return [
        ev.claim_status(claim_id=f"{IBAN}-{PASSWORD}"),
        ev.document(title=DIAGNOSIS, category=IBAN, sensitive=True),
        ev.document(title=f"Abrechnung {DIAGNOSIS}", category=PASSWORD),  # not flagged sensitive!
        ev.document(title=f"Lastschrift {IBAN}"),
        ev.activation_code(),
        ev.login_code(),
        ev.mtan(purpose=secret[:50]),
        ev.mtan(purpose=PASSWORD),
        ev.username_reminder(email=f"{PASSWORD}@example.org"),
        ev.password_reset(email=f"{PASSWORD}@example.org"),
        ev.points_warning(),
        ev.cancelled(),
        ev.contact_changed(
            email=f"{PASSWORD}@example.org",
            previous_email="alt@example.org",
            mobile="+49 170 1111111",
            previous_mobile="0151 2345678",
        ),
        # issue 9/10: the new messages
        ev.claim_status(missing_documents=(DIAGNOSIS, IBAN, PASSWORD)),
        ev.document(delivery=DocumentDelivery.POST, title=DIAGNOSIS, category=IBAN, sensitive=True),
        ev.email_code(email=f"{PASSWORD}@example.org"),
        ev.registration_not_completed(email=f"{PASSWORD}@example.org", username=PASSWORD),
        ev.registration_not_completed(username=DIAGNOSIS, reason=IBAN),
        ev.locked(),
        ev.password_changed(how=PASSWORD),
        ev.two_factor_enabled(mobile_masked=IBAN),
        ev.two_factor_disabled(),
        ev.device_bound(device_name=DIAGNOSIS),
        ev.device_bound(device_name=f"Handy {IBAN}"),
        ev.device_revoked(),
        ev.address_changed(ev.address.model_copy(update={"street": "Lindenallee 5"})),
    ]


def test_nt5_secrets_in_event_fields_never_appear_in_any_rendered_subject_or_body(ev, renderer):
    view = ev.view()
    rendered_kinds = set()
    for event in poisoned_events(ev):
        planning_view = None if isinstance(event, RegistrationNotCompleted) else view
        for message in plan_messages(event, planning_view):
            rendered = renderer.render(message, withheld=withheld_values(event))
            assert_no_secret(rendered)
            rendered_kinds.add(message.kind)
    assert rendered_kinds == set(MessageKind)


@pytest.mark.parametrize("secret", SECRETS, ids=["diagnosis", "iban", "password"])
def test_nt5_no_template_renders_a_secret_put_into_any_context_value(ev, renderer, secret):
    """Every string value of every template context, replaced by the secret: the text is
    either refused (guard, or a formatter rejecting it) or does not contain it. The password
    cannot be recognised by its shape, so the caller marks it withheld."""
    for event, message in ev.every_message():
        refused = 0
        for key, value in message.context.items():
            if not isinstance(value, str):
                continue
            poisoned = message.model_copy(update={"context": {**message.context, key: secret}})
            try:
                rendered = renderer.render(poisoned, withheld={PASSWORD, *withheld_values(event)})
            except SensitiveContentError:
                refused += 1
                continue
            except RenderError:
                continue  # a date or status formatter refused it: nothing is sent either
            assert_no_secret(rendered)
        # Values a template prints verbatim (name, number, code, title, url) were refused.
        printed = {"claim_number", "code", "username", "reset_url"} & message.context.keys()
        assert refused >= len(printed), (message.kind, message.channel)


def test_nt5_context_values_a_template_does_not_use_are_never_rendered(ev, renderer):
    for event, message in ev.every_message():
        extra = {"diagnosis": DIAGNOSIS, "iban": IBAN, "password": PASSWORD}
        poisoned = message.model_copy(update={"context": {**message.context, **extra}})
        assert_no_secret(renderer.render(poisoned, withheld=withheld_values(event)))


def test_nt5_the_guard_raises_if_a_buggy_template_prints_a_withheld_field(ev):
    buggy = Renderer(
        loader=DictLoader(
            {
                "email/_layout.html": "{{ subject }}",
                "email/document_available.txt": "{% block subject %}Neu{% endblock %}"
                "{{ name }}: {{ document_title or 'Dokument' }}",
            }
        )
    )
    event = ev.document(title="Arztbrief Dr. Sommer", sensitive=True)
    (message,) = plan_messages(event, ev.view())
    leaked = message.model_copy(
        update={"context": {**message.context, "document_title": "Arztbrief Dr. Sommer"}}
    )

    with pytest.raises(SensitiveContentError) as raised:
        buggy.render(leaked, withheld=withheld_values(event))
    assert "Arztbrief" not in str(raised.value)  # findings never quote the value


def test_nt5_a_withheld_word_that_is_also_fixed_template_wording_is_not_a_leak(ev, renderer):
    event = ev.document(title="Dokument", sensitive=True)
    (message,) = plan_messages(event, ev.view())

    rendered = renderer.render(message, withheld=withheld_values(event))

    assert "ein neues Dokument" in rendered.text


def test_nt5_mtan_purpose_text_is_never_echoed_into_the_sms(ev, renderer):
    event = ev.mtan(purpose="Befund vom 01.02.")
    (message,) = plan_messages(event, None)

    rendered = renderer.render(message, withheld=withheld_values(event))

    assert "Befund" not in rendered.text
    assert "eine sicherheitsrelevante Änderung" in rendered.text


def test_nt5_a_name_containing_a_diagnosis_is_refused_rather_than_sent(ev, renderer):
    view = apply(None, ev.registered(last_name="Muster (F32.1)"))
    (message,) = plan_messages(ev.claim_status(), view)

    with pytest.raises(SensitiveContentError, match="diagnosis"):
        renderer.render(message)


# -------------------------------------------------------------------- the scanner


@pytest.mark.parametrize(
    "text",
    [
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "de89 3704 0044 0532 0130 00",
        "IBAN: DE89-3704-0044-0532-0130-00.",
        "D E 8 9 3 7 0 4 0 0 4 4 0 5 3 2 0 1 3 0 0 0",
        "DE00123456789012345678",  # wrong checksum: still refused for DE
        "GB82 WEST 1234 5698 7654 32",
        "AT611904300234573201",
        "FR1420041010050500013M02606",
    ],
)
def test_nt5_scanner_finds_ibans_in_every_common_format(text):
    assert [f.rule for f in scan(text)] == ["iban"]


@given(
    digits=st.text(alphabet="0123456789", min_size=20, max_size=20),
    separator=st.sampled_from(["", " ", "-", "\u00a0"]),
    group=st.sampled_from([1, 2, 4]),
    prefix=st.sampled_from(["", "Konto ", "IBAN:", "("]),
)
def test_nt5_scanner_finds_every_german_iban_however_it_is_spaced(digits, separator, group, prefix):
    chars = "DE" + digits
    spaced = separator.join(chars[i : i + group] for i in range(0, len(chars), group))

    assert any(f.rule == "iban" for f in scan(prefix + spaced))


@pytest.mark.parametrize(
    "text",
    [
        "Ihr Vorgang SCH-2026-000123 vom 02.03.2026",
        "Rufen Sie uns an: 0800 4520104",
        "+49 151 2345678",
        "X7K2-9PQ4",
        "3bc7dfa0-2d80-59d7-84d0-8fd34a1ffe42",
        "https://portal.example.org/reset?token=DE12ABCDEFGHIJKLMNOP",
        "Version 10.2 der Bedingungen",
        "Passwort zurücksetzen: über den folgenden Link",
        "Ihr Passwort bleibt gültig.",
        "1.500 Punkte, 1.234,56 €",
    ],
)
def test_nt5_scanner_does_not_flag_ordinary_portal_text(text):
    assert scan(text) == []


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Befund: unauffällig", "diagnosis"),
        ("ICD-10 M54.16", "diagnosis"),
        ("Behandlung wegen F43.1", "diagnosis"),
        ("Diagnosis attached", "diagnosis"),
        ("Passwort: hunter2hunter2", "password"),
        ("Ihr Kennwort=abc", "password"),
        ("password: x", "password"),
    ],
)
def test_nt5_scanner_finds_diagnoses_and_password_assignments(text, rule):
    assert rule in [f.rule for f in scan(text)]


def test_nt5_withheld_values_are_matched_ignoring_case_and_spacing():
    findings = scan("Titel: ARZTBRIEF   dr. sommer", withheld=["Arztbrief Dr. Sommer"])

    assert [f.rule for f in findings] == ["withheld_value"]


def test_nt5_very_short_withheld_values_are_not_matched():
    assert scan("Sie haben Post", withheld=["Sie"]) == []


def test_nt5_ensure_clean_names_the_part_and_rule_but_not_the_value():
    with pytest.raises(SensitiveContentError) as raised:
        ensure_clean([("subject", "ok"), ("body", f"Konto {IBAN}")])

    assert raised.value.findings == ("iban in body",)
    assert IBAN not in str(raised.value)


def test_nt5_the_guard_also_checks_the_html_alternative():
    rendered = RenderedMessage(subject="ok", text="ok", html=f"<p>{IBAN}</p>")

    with pytest.raises(SensitiveContentError, match="html"):
        guard_rendered(rendered)


# ------------------------------------------------- the channels' last line of defence


def leaking_message(ev):
    (message,) = plan_messages(ev.claim_status(), ev.view())
    return message, RenderedMessage(subject="Betreff", text=f"Konto {IBAN}", html=None)


async def test_nt5_the_smtp_channel_refuses_a_leaking_text_before_connecting(ev):
    message, rendered = leaking_message(ev)
    # Port 9 (discard) on a TEST-NET address: any connection attempt would fail differently.
    channel = SmtpEmailChannel(
        SmtpSettings(host="192.0.2.1", port=9, from_address="noreply@example.org"),
        clock=FixedClock(ev.now),
    )

    with pytest.raises(SensitiveContentError):
        await channel.send(message, rendered)


async def test_nt5_the_sms_channel_refuses_a_leaking_text_before_any_request(ev):
    (message,) = plan_messages(ev.login_code(), ev.view())
    rendered = RenderedMessage(subject="", text=f"Code 123456, {DIAGNOSIS}")
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(202, json={"message_uuid": "x"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        channel = VonageSmsChannel(
            client, VonageSmsSettings(api_key="k", api_secret="s"), clock=FixedClock(ev.now)
        )
        with pytest.raises(SensitiveContentError):
            await channel.send(message, rendered)
    assert requests == []
    assert message.channel is ChannelKind.SMS


async def test_nt5_a_stored_text_altered_after_it_was_rendered_clean_is_refused_at_sending(
    ev, renderer
):
    """The channels scan the stored text itself right before sending, whatever was found
    at rendering: the same subject and layout with one leaking line is refused."""
    (message,) = plan_messages(ev.claim_status(), ev.view())
    rendered = renderer.render(message)
    channel = SmtpEmailChannel(
        SmtpSettings(host="192.0.2.1", port=9, from_address="noreply@example.org"),
        clock=FixedClock(ev.now),
    )
    altered = rendered.model_copy(update={"text": rendered.text + f"Konto {IBAN}\n"})
    html_altered = rendered.model_copy(update={"html": f"{rendered.html}<p>{IBAN}</p>"})

    for leaking in (altered, html_altered):
        with pytest.raises(SensitiveContentError):
            await channel.send(message, leaking)
    guard_rendered(rendered)  # the clean text itself is still clean
