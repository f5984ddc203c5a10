"""NT-1/NT-4: what the channel adapters put on the wire, and how they classify failures.

These use httpx's in-memory transport; the same adapters run against real local servers in
`tests/integration`.
"""

from __future__ import annotations

import json
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import httpx
import pytest
from notifier.adapters.channel import (
    ChannelRouter,
    MessageExpiredError,
    PermanentSendError,
    RetryableSendError,
)
from notifier.adapters.email_smtp import SmtpSettings, build_email, email_bytes, message_id_for
from notifier.adapters.sms_http import (
    VonageSmsChannel,
    VonageSmsSettings,
    build_request_body,
    sms_segments,
)
from notifier.domain.messages import ChannelKind
from notifier.domain.plan import plan_messages
from servicekit.clock import FixedClock

SMS_SETTINGS = VonageSmsSettings(
    api_key="key123", api_secret="secret456", base_url="https://sms.test", sender="Allianz"
)


@pytest.fixture
def login_sms(ev, renderer):
    (message,) = plan_messages(ev.login_code(), ev.view())
    return message, renderer.render(message)


def channel_answering(ev, *responses: httpx.Response | Exception):
    requests: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return VonageSmsChannel(client, SMS_SETTINGS, clock=FixedClock(ev.now)), requests, client


# ------------------------------------------------------------------------------ SMS


def test_nt1_sms_request_body_has_the_vonage_messages_api_shape(ev, login_sms):
    message, rendered = login_sms

    body = build_request_body(message, rendered, SMS_SETTINGS, ev.now)

    assert body == {
        "message_type": "text",
        "channel": "sms",
        "to": "491512345678",
        "from": "Allianz",
        "text": rendered.text.strip(),
        "client_ref": message.message_key,
        "ttl": 300,
        "sms": {"encoding_type": "text"},
    }


def test_nt4_sms_ttl_is_the_codes_remaining_validity_so_the_network_drops_it_late(ev, login_sms):
    message, rendered = login_sms

    body = build_request_body(message, rendered, SMS_SETTINGS, ev.now + timedelta(minutes=4))

    assert body["ttl"] == SMS_SETTINGS.min_ttl_seconds  # 60 s left, clamped to the minimum


def test_nt1_sms_with_characters_outside_gsm7_is_sent_as_unicode():
    assert sms_segments("Grüße aus München, 5 €").encoding == "text"
    assert sms_segments("Zażółć gęślą jaźń").encoding == "unicode"
    assert sms_segments("a" * 160).segments == 1
    assert sms_segments("a" * 161).segments == 2
    assert sms_segments("€" * 80).units == 160


async def test_nt1_sms_is_accepted_and_returns_the_providers_message_uuid(ev, login_sms):
    message, rendered = login_sms
    channel, requests, client = channel_answering(
        ev, httpx.Response(202, json={"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"})
    )
    async with client:
        reference = await channel.send(message, rendered)

    assert reference == "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
    (request,) = requests
    assert request.method == "POST"
    assert str(request.url) == "https://sms.test/v1/messages"
    assert request.headers["authorization"] == "Basic a2V5MTIzOnNlY3JldDQ1Ng=="
    assert json.loads(request.content)["client_ref"] == message.message_key


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_nt4_sms_5xx_429_and_408_are_retryable(ev, login_sms, status):
    message, rendered = login_sms
    channel, _, client = channel_answering(ev, httpx.Response(status, json={"title": "Busy"}))
    async with client:
        with pytest.raises(RetryableSendError, match=str(status)):
            await channel.send(message, rendered)


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
async def test_nt4_sms_other_4xx_are_permanent(ev, login_sms, status):
    message, rendered = login_sms
    problem = {"type": "https://developer.vonage.com/api-errors#invalid-params", "title": "Bad"}
    channel, _, client = channel_answering(ev, httpx.Response(status, json=problem))
    async with client:
        with pytest.raises(PermanentSendError, match=f"{status}: Bad"):
            await channel.send(message, rendered)


async def test_nt4_sms_throttling_carries_the_providers_retry_after(ev, login_sms):
    message, rendered = login_sms
    channel, _, client = channel_answering(
        ev, httpx.Response(429, headers={"Retry-After": "30"}, json={"title": "Throttled"})
    )
    async with client:
        with pytest.raises(RetryableSendError) as raised:
            await channel.send(message, rendered)

    assert raised.value.retry_after == timedelta(seconds=30)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
)
async def test_nt4_sms_transport_errors_and_timeouts_are_retryable(ev, login_sms, error):
    message, rendered = login_sms
    channel, _, client = channel_answering(ev, error)
    async with client:
        with pytest.raises(RetryableSendError):
            await channel.send(message, rendered)


async def test_nt4_an_expired_code_is_refused_by_the_sms_channel_without_a_request(ev, login_sms):
    message, rendered = login_sms
    _, requests, client = channel_answering(ev)
    late = VonageSmsChannel(client, SMS_SETTINGS, clock=FixedClock(message.not_after))
    async with client:
        with pytest.raises(MessageExpiredError):
            await late.send(message, rendered)

    assert requests == []


# ---------------------------------------------------------------------------- e-mail


def test_nt4_email_message_id_is_derived_from_the_message_key(ev, renderer):
    (message,) = plan_messages(ev.claim_status(), ev.view())
    rendered = renderer.render(message)
    settings = SmtpSettings(
        host="smtp.test", from_address="noreply@portal.example", message_id_domain="portal.example"
    )

    email = build_email(message, rendered, settings, date=ev.now)

    assert email["Message-ID"] == f"<{message.message_key}@portal.example>"
    assert email["Message-ID"] == message_id_for(message.message_key, "portal.example")
    assert email["To"] == "erika.mustermann@example.org"
    assert email["Subject"] == rendered.subject
    assert email["Auto-Submitted"] == "auto-generated"
    assert email["Date"] == "Mon, 02 Mar 2026 13:35:00 +0000"


def test_nt1_email_is_plain_text_with_an_html_alternative_in_utf8(ev, renderer):
    (message,) = plan_messages(ev.claim_status(), ev.view())
    rendered = renderer.render(message)
    settings = SmtpSettings(host="smtp.test", from_address="noreply@portal.example")

    raw = build_email(message, rendered, settings, date=ev.now).as_bytes()
    parsed = message_from_bytes(raw, policy=default_policy)

    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    assert "Unterlagen angefordert" in plain.get_content()
    assert "Unterlagen angefordert" in html.get_content()
    assert str(parsed["Subject"]) == "Neuer Bearbeitungsstand zu Ihrem Vorgang SCH-2026-000123"


def test_nt1_an_sms_cannot_be_built_as_an_email(ev, renderer, login_sms):
    message, rendered = login_sms
    with pytest.raises(ValueError, match="not an e-mail"):
        build_email(message, rendered, SmtpSettings(host="h", from_address="a@b.c"), date=ev.now)


# ---------------------------------------------------------------------------- router


async def test_nt1_router_sends_through_the_channel_configured_for_the_kind(ev, login_sms):
    message, rendered = login_sms

    class Recording:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send(self, message, rendered) -> str:
            self.sent.append(message.message_key)
            return "ref-1"

    sms = Recording()
    router = ChannelRouter({ChannelKind.SMS: sms})

    assert await router.send(message, rendered) == "ref-1"
    assert sms.sent == [message.message_key]


async def test_nt1_a_missing_channel_is_a_retryable_configuration_error(ev, login_sms):
    message, rendered = login_sms

    with pytest.raises(RetryableSendError, match="no sms channel"):
        await ChannelRouter({}).send(message, rendered)


def test_nt1_email_wire_bytes_are_seven_bit_crlf_and_parse_back_to_the_rendered_text(ev, renderer):
    (message,) = plan_messages(ev.claim_status(), ev.view())
    rendered = renderer.render(message)
    settings = SmtpSettings(
        host="smtp.test", from_address="noreply@portal.example", from_name="Meine Allianz – Köln"
    )

    raw = email_bytes(message, rendered, settings, date=ev.now)

    assert raw is not None
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in lines) <= 78
    parsed = message_from_bytes(raw, policy=default_policy)
    assert parsed.defects == []
    assert str(parsed["From"]) == "Meine Allianz – Köln <noreply@portal.example>"
    assert str(parsed["Subject"]) == rendered.subject
    assert parsed["Content-Language"] == "de"
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().replace("\r\n", "\n") == rendered.text
    assert rendered.html is not None
    # A MIME part ends with a line break (the stdlib builder adds it as well).
    assert html.get_content().replace("\r\n", "\n") == rendered.html.rstrip("\n") + "\n"


def test_nt1_a_line_break_in_a_header_value_is_refused_not_sent(ev, renderer):
    (message,) = plan_messages(ev.claim_status(), ev.view())
    rendered = renderer.render(message).model_copy(update={"subject": "Betreff\r\nBcc: x@y.z"})
    settings = SmtpSettings(host="smtp.test", from_address="noreply@portal.example")

    with pytest.raises(ValueError, match="line breaks"):
        email_bytes(message, rendered, settings, date=ev.now)
