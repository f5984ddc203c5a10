"""NT-1: channels are configured per environment; delivery settings are checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from notifier.adapters.channel import RetryableSendError
from notifier.adapters.email_smtp import SmtpEmailChannel, SmtpSecurity
from notifier.adapters.print_queue import LetterChannel
from notifier.adapters.sms_http import VonageSmsChannel
from notifier.bootstrap import channels
from notifier.config import NotifierSettings
from notifier.domain.messages import ChannelKind
from notifier.domain.plan import plan_messages
from pydantic import ValidationError
from servicekit.clock import FixedClock


def test_nt1_the_notifier_is_service_notifier_on_port_8003(monkeypatch):
    monkeypatch.delenv("PORTAL_HTTP_PORT", raising=False)
    settings = NotifierSettings()

    assert settings.service_name == "notifier"
    assert settings.http_port == 8003
    assert settings.schema_name == "notifier"


def test_nt1_channels_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_SMTP_HOST", "smtp.example.org")
    monkeypatch.setenv("PORTAL_SMTP_PORT", "465")
    monkeypatch.setenv("PORTAL_SMTP_SECURITY", "tls")
    monkeypatch.setenv("PORTAL_SMTP_USERNAME", "notifier")
    monkeypatch.setenv("PORTAL_SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("PORTAL_SMS_BASE_URL", "https://api-eu.vonage.com")
    monkeypatch.setenv("PORTAL_SMS_API_KEY", "key")
    monkeypatch.setenv("PORTAL_SMS_API_SECRET", "secret")
    monkeypatch.setenv("PORTAL_PRINT_QUEUE_DIR", str(tmp_path))
    settings = NotifierSettings()

    smtp = settings.smtp()
    assert smtp is not None
    assert (smtp.host, smtp.port, smtp.security) == ("smtp.example.org", 465, SmtpSecurity.TLS)
    assert (smtp.username, smtp.password) == ("notifier", "s3cret")
    assert "s3cret" not in repr(settings)
    router = channels(settings, httpx.AsyncClient(), FixedClock(_now()))
    configured = router._channels
    assert isinstance(configured[ChannelKind.EMAIL], SmtpEmailChannel)
    assert isinstance(configured[ChannelKind.SMS], VonageSmsChannel)
    assert isinstance(configured[ChannelKind.LETTER], LetterChannel)


async def test_nt1_a_message_for_an_unconfigured_channel_waits_for_the_configuration(ev):
    router = channels(NotifierSettings(), httpx.AsyncClient(), FixedClock(_now()))
    (message,) = plan_messages(ev.login_code(), ev.view())

    with pytest.raises(RetryableSendError, match="no sms channel configured"):
        await router.send(message, None)  # type: ignore[arg-type]


def test_nt4_the_lease_must_outlast_every_channel_timeout():
    with pytest.raises(ValidationError, match="sending_lease_seconds"):
        NotifierSettings(smtp_timeout_seconds=30, sending_lease_seconds=45)


def test_nt1_sms_needs_credentials():
    with pytest.raises(ValidationError, match="sms_api_key"):
        NotifierSettings(sms_base_url="https://api.nexmo.com")


def test_nt4_retry_settings_become_the_retry_policy():
    policy = NotifierSettings(
        max_attempts=4, retry_base_seconds=2, retry_max_seconds=60, sending_lease_seconds=90
    ).retry_policy()

    assert policy.max_attempts == 4
    assert policy.base_delay == timedelta(seconds=2)
    assert policy.max_delay == timedelta(minutes=1)
    assert policy.sending_lease == timedelta(seconds=90)


def _now() -> datetime:
    return datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
