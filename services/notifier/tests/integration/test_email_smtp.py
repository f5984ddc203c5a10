"""NT-1/NT-4: e-mail through a real SMTP server (aiosmtpd on 127.0.0.1, random port)."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from notifier.adapters.channel import PermanentSendError, RetryableSendError
from notifier.adapters.email_smtp import SmtpEmailChannel, SmtpSecurity
from notifier.domain.contacts import apply
from notifier.domain.delivery import DeliveryStatus, begin_attempt, queued, record_sent
from notifier.domain.plan import plan_messages, withheld_values
from notifier_servers import running_smtp, settings_for
from servicekit.clock import FixedClock


def parse(envelope) -> EmailMessage:
    parsed = message_from_bytes(envelope.original_content, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


async def test_cl4_claim_status_change_arrives_as_exactly_one_german_email(
    smtp_server, ev, renderer
):
    view = apply(None, ev.registered())
    event = ev.claim_status()
    (message,) = plan_messages(event, view)
    assert plan_messages(event, view) == [message]  # NT-4: replanning yields the same message
    rendered = renderer.render(message, withheld=withheld_values(event))
    channel = SmtpEmailChannel(settings_for(smtp_server.port), clock=FixedClock(ev.now))

    delivery = begin_attempt(queued(message, ev.now), ev.now)
    reference = await channel.send(message, rendered)
    delivery = record_sent(delivery, reference, ev.now)

    assert delivery.status is DeliveryStatus.SENT
    (envelope,) = smtp_server.handler.envelopes
    assert envelope.mail_from == "noreply@portal.example"
    assert envelope.rcpt_tos == ["erika@example.org"]
    email = parse(envelope)
    assert email["Subject"] == "Neuer Bearbeitungsstand zu Ihrem Vorgang SCH-2026-000123"
    assert email["Message-ID"] == f"<{message.message_key}@portal.example>" == reference
    plain = email.get_body(preferencelist=("plain",))
    assert plain is not None
    text = plain.get_content()
    assert text.startswith("Guten Tag Erika Mustermann,")
    assert "Neuer Stand: Unterlagen angefordert" in text
    assert "Voraussichtlich abgeschlossen bis: 31.03.2026" in text
    html = email.get_body(preferencelist=("html",))
    assert html is not None
    assert "Unterlagen angefordert" in html.get_content()


async def test_nt4_a_resend_carries_the_same_message_id_so_it_is_recognisable(
    smtp_server, ev, renderer
):
    (message,) = plan_messages(ev.claim_status(), apply(None, ev.registered()))
    rendered = renderer.render(message)
    channel = SmtpEmailChannel(settings_for(smtp_server.port), clock=FixedClock(ev.now))

    first = await channel.send(message, rendered)
    second = await channel.send(message, rendered)

    ids = [parse(e)["Message-ID"] for e in smtp_server.handler.envelopes]
    assert first == second == ids[0] == ids[1]


async def test_nt4_a_5xx_refused_recipient_is_a_permanent_failure(smtp_server, ev, renderer):
    view = apply(None, ev.registered(email="unknown@example.org"))
    (message,) = plan_messages(ev.claim_status(), view)
    channel = SmtpEmailChannel(settings_for(smtp_server.port), clock=FixedClock(ev.now))

    with pytest.raises(PermanentSendError, match="550"):
        await channel.send(message, renderer.render(message))
    assert smtp_server.handler.envelopes == []


async def test_nt4_a_4xx_refused_recipient_is_retryable(smtp_server, ev, renderer):
    view = apply(None, ev.registered(email="busy@example.org"))
    (message,) = plan_messages(ev.claim_status(), view)
    channel = SmtpEmailChannel(settings_for(smtp_server.port), clock=FixedClock(ev.now))

    with pytest.raises(RetryableSendError, match="450"):
        await channel.send(message, renderer.render(message))


async def test_nt4_an_unreachable_smtp_server_is_retryable(ev, renderer, closed_port):
    port = closed_port
    (message,) = plan_messages(ev.claim_status(), apply(None, ev.registered()))
    channel = SmtpEmailChannel(settings_for(port, timeout=2.0), clock=FixedClock(ev.now))

    with pytest.raises(RetryableSendError, match="smtp transport"):
        await channel.send(message, renderer.render(message))


async def test_nt4_an_answer_lost_in_the_mail_transaction_is_recorded_as_outcome_unknown(
    ev, renderer
):
    """The server may have accepted what it never answered: the attempt says so in the
    delivery log (README, "The crash window"), as an expired lease does."""
    (message,) = plan_messages(ev.claim_status(), apply(None, ev.registered()))
    async with running_smtp(rcpt_delay=30.0) as slow:
        settings = settings_for(slow.port, timeout=0.5)
        channel = SmtpEmailChannel(settings, clock=FixedClock(ev.now))
        try:
            with pytest.raises(RetryableSendError) as lost:
                await channel.send(message, renderer.render(message))
        finally:
            await channel.close()
    assert lost.value.reason.startswith("outcome_unknown: smtp answer lost (")


async def test_nt1_starttls_with_auth_delivers_over_an_encrypted_authenticated_session(
    certificates, ev, renderer, smtp_factory
):
    smtp = await smtp_factory(tls_context=certificates.server_context(), require_auth=True)
    (message,) = plan_messages(ev.claim_status(), apply(None, ev.registered()))
    settings = settings_for(
        smtp.port,
        host="localhost",
        security=SmtpSecurity.STARTTLS,
        username="notifier",
        password="s3cret-Passw0rd",
        cert_bundle=str(certificates.cert),
    )
    channel = SmtpEmailChannel(settings, clock=FixedClock(ev.now))

    await channel.send(message, renderer.render(message))

    assert len(smtp.handler.envelopes) == 1
    assert [login for _, login in smtp.handler.logins] == ["notifier"]


async def test_nt1_wrong_smtp_credentials_are_retryable_not_the_messages_fault(
    certificates, ev, renderer, smtp_factory
):
    smtp = await smtp_factory(tls_context=certificates.server_context(), require_auth=True)
    (message,) = plan_messages(ev.claim_status(), apply(None, ev.registered()))
    settings = settings_for(
        smtp.port,
        host="localhost",
        security=SmtpSecurity.STARTTLS,
        username="notifier",
        password="wrong-password",
        cert_bundle=str(certificates.cert),
    )
    with pytest.raises(RetryableSendError, match="535"):
        await SmtpEmailChannel(settings, clock=FixedClock(ev.now)).send(
            message, renderer.render(message)
        )
    assert smtp.handler.envelopes == []


async def test_nt1_implicit_tls_delivers_and_validates_the_servers_certificate(
    certificates, ev, renderer, smtp_factory
):
    smtp = await smtp_factory(implicit_tls=certificates.server_context())
    (message,) = plan_messages(ev.claim_status(), apply(None, ev.registered()))
    settings = settings_for(smtp.port, host="localhost", security=SmtpSecurity.TLS)
    trusted = SmtpEmailChannel(
        settings, tls_context=certificates.client_context(), clock=FixedClock(ev.now)
    )

    await trusted.send(message, renderer.render(message))
    assert len(smtp.handler.envelopes) == 1

    untrusted = SmtpEmailChannel(settings, clock=FixedClock(ev.now))  # system CAs only
    with pytest.raises(RetryableSendError):
        await untrusted.send(message, renderer.render(message))
    assert len(smtp.handler.envelopes) == 1
