"""Settings of the notifier (PORTAL_* environment variables), per environment (NT-1).

A channel is switched on by configuring it: `PORTAL_SMTP_HOST` for e-mail,
`PORTAL_SMS_BASE_URL` (+ key and secret) for SMS, `PORTAL_PRINT_QUEUE_DIR` for letters
(document letters also need `PORTAL_DOCUMENTS_BASE_URL` + `PORTAL_DOCUMENTS_SECRET`). A
message for a channel that is not configured waits and is retried (the configuration is
at fault, not the message), so a fixed deployment sends the backlog.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from servicekit.settings import ServiceSettings

from notifier.adapters.documents_http import DocumentsApiSettings
from notifier.adapters.email_smtp import SmtpSecurity, SmtpSettings
from notifier.adapters.letters import LetterSettings
from notifier.adapters.render import RenderSettings
from notifier.adapters.sms_http import VonageSmsSettings
from notifier.domain.delivery import RetryPolicy


class NotifierSettings(ServiceSettings):
    service_name: str = "notifier"
    http_port: int = 8003

    # --- e-mail over SMTP (NT-1): off unless smtp_host is set
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: SmtpSecurity = SmtpSecurity.STARTTLS
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from_address: str = "meine-allianz@notifier.portal.invalid"
    smtp_from_name: str = "Meine Allianz"
    smtp_reply_to: str | None = None
    smtp_message_id_domain: str = "notifier.portal.invalid"
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    smtp_validate_certs: bool = True
    smtp_cert_bundle: str | None = None
    #: Persistent sessions to the relay (a pool per relay host; sends beyond it wait): as
    #: many as the worker keeps sends in flight.
    smtp_pool_size: int = Field(default=16, ge=1, le=256)
    smtp_pool_idle_seconds: float = Field(default=60.0, gt=0)
    smtp_session_max_messages: int = Field(default=100, ge=1)

    # --- SMS through the provider's HTTP API (Vonage Messages API shape): off unless set
    sms_base_url: str | None = None
    sms_api_key: str | None = None
    sms_api_secret: SecretStr | None = None
    sms_sender: str = Field(default="Allianz", max_length=15)
    sms_timeout_seconds: float = Field(default=10.0, gt=0)
    sms_webhook_url: str | None = None

    # --- letters: PDF + manifest into the print shop's queue directory: off unless set
    print_queue_dir: Path | None = None
    letter_font_path: Path | None = None

    # --- the documents service's print route, for document letters' enclosures (DOC-4):
    # the notifier calls it as the internal system `documents_system` (documents grants
    # that system the operation `prints`). Without it, document letters wait and retry.
    documents_base_url: str | None = None
    documents_system: str = "notifier"
    documents_secret: SecretStr | None = None
    documents_timeout_seconds: float = Field(default=30.0, gt=0)

    # --- wording shared by the templates
    portal_name: str = "Meine Allianz"
    portal_url: str = "https://www.allianz.de/meine-allianz/"
    service_phone: str = "0800 4520104"

    # --- delivery (NT-4)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    #: How long an attempt holds its delivery. Must exceed every channel's timeout: a lease
    #: that runs out means "the worker died mid-send" and the message is tried again.
    sending_lease_seconds: float = Field(default=300.0, gt=0)
    run_worker: bool = True
    #: Sends in flight per instance. A send waits on the relay's answers, not on this
    #: process: 8 kept ~150 e-mails/s, under 100/s beside other services on two cores
    #: (bench e2e: ClaimStatusChanged -> e-mail p99 2.4 s at 100/s; 0.4 s with 16).
    worker_concurrency: int = Field(default=16, ge=1, le=256)
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    #: NT-6 per-recipient limits (the defaults of `domain.ratelimit`); off only for load tests.
    rate_limits_enabled: bool = True

    @model_validator(mode="after")
    def _lease_outlasts_sends(self) -> NotifierSettings:
        timeouts = [self.smtp_timeout_seconds, self.sms_timeout_seconds]
        if self.documents_base_url:
            timeouts.append(self.documents_timeout_seconds)  # a letter's enclosure fetch
        longest = max(timeouts)
        if self.sending_lease_seconds <= 2 * longest:
            raise ValueError(
                "sending_lease_seconds must be more than twice the longest channel timeout"
            )
        if self.sms_base_url and not (self.sms_api_key and self.sms_api_secret):
            raise ValueError("the SMS channel needs sms_api_key and sms_api_secret")
        if self.documents_base_url and not self.documents_secret:
            raise ValueError("the documents service needs documents_secret")
        return self

    def retry_policy(self) -> RetryPolicy:
        base = timedelta(seconds=self.retry_base_seconds)
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=base,
            max_delay=max(base, timedelta(seconds=self.retry_max_seconds)),
            sending_lease=timedelta(seconds=self.sending_lease_seconds),
        )

    def smtp(self) -> SmtpSettings | None:
        if not self.smtp_host:
            return None
        return SmtpSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            security=self.smtp_security,
            username=self.smtp_username,
            password=self.smtp_password.get_secret_value() if self.smtp_password else None,
            from_address=self.smtp_from_address,
            from_name=self.smtp_from_name,
            reply_to=self.smtp_reply_to,
            message_id_domain=self.smtp_message_id_domain,
            timeout=self.smtp_timeout_seconds,
            validate_certs=self.smtp_validate_certs,
            cert_bundle=self.smtp_cert_bundle,
            pool_size=self.smtp_pool_size,
            pool_idle_seconds=self.smtp_pool_idle_seconds,
            session_max_messages=self.smtp_session_max_messages,
        )

    def sms(self) -> VonageSmsSettings | None:
        if not (self.sms_base_url and self.sms_api_key and self.sms_api_secret):
            return None
        return VonageSmsSettings(
            api_key=self.sms_api_key,
            api_secret=self.sms_api_secret.get_secret_value(),
            sender=self.sms_sender,
            base_url=self.sms_base_url,
            timeout=self.sms_timeout_seconds,
            webhook_url=self.sms_webhook_url,
        )

    def documents(self) -> DocumentsApiSettings | None:
        if not (self.documents_base_url and self.documents_secret):
            return None
        return DocumentsApiSettings(
            base_url=self.documents_base_url,
            system=self.documents_system,
            secret=self.documents_secret.get_secret_value(),
            timeout=self.documents_timeout_seconds,
        )

    def letters(self) -> LetterSettings:
        return LetterSettings(font_path=self.letter_font_path)

    def rendering(self) -> RenderSettings:
        return RenderSettings(
            portal_name=self.portal_name,
            portal_url=self.portal_url,
            service_phone=self.service_phone,
        )
