"""E-mail over SMTP (NT-1), with aiosmtplib.

- Transport security per environment: `none` (local relay/tests), `starttls` (submission
  port 587) or `tls` (implicit TLS, port 465); optional AUTH; certificate validation on by
  default.
- `Message-ID: <message_key@domain>`: derived from the NT-4 key, so every resend of the same
  message carries the same id. Receiving MTAs, mailbox providers and the operators' log
  search recognise a duplicate; the id is also the provider reference this channel returns
  (MTAs log it next to their queue id, which is logged here too).
- multipart/alternative: the plain text first, the HTML alternative second.

Error classification (see `channel.py`):
- retryable: connection errors, timeouts, disconnects, 4xx replies, and failures of the
  server/account rather than of this message (HELO, AUTH, MAIL FROM refused, STARTTLS not
  offered), so a fixed configuration sends the backlog;
- permanent: a 5xx reply to the recipient (RCPT TO) or the content (DATA).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from enum import StrEnum

import aiosmtplib
import structlog
from servicekit.clock import Clock, SystemClock

from notifier.adapters.channel import PermanentSendError, RetryableSendError, refuse_if_expired
from notifier.adapters.render import guard_rendered
from notifier.domain.messages import ChannelKind, OutgoingMessage, RenderedMessage

log = structlog.get_logger(__name__)


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    from_address: str
    port: int = 587
    security: SmtpSecurity = SmtpSecurity.STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    from_name: str = "Meine Allianz"
    reply_to: str | None = None
    #: Right-hand side of generated Message-IDs.
    message_id_domain: str = "notifier.portal.invalid"
    validate_certs: bool = True
    #: PEM bundle of CAs to trust instead of the system store (private relays).
    cert_bundle: str | None = None


def message_id_for(message_key: str, domain: str) -> str:
    return f"<{message_key}@{domain}>"


def build_email(
    message: OutgoingMessage,
    rendered: RenderedMessage,
    settings: SmtpSettings,
    *,
    date: datetime,
) -> EmailMessage:
    """The MIME message for `message` (pure apart from `date`)."""
    if message.channel is not ChannelKind.EMAIL:
        raise ValueError("not an e-mail message")
    email = EmailMessage()
    email["From"] = formataddr((settings.from_name, settings.from_address))
    email["To"] = message.recipient
    if settings.reply_to:
        email["Reply-To"] = settings.reply_to
    email["Subject"] = rendered.subject
    email["Date"] = format_datetime(date)
    email["Message-ID"] = message_id_for(message.message_key, settings.message_id_domain)
    email["Content-Language"] = "de"
    # RFC 3834: automatic message; suppress out-of-office replies.
    email["Auto-Submitted"] = "auto-generated"
    email["X-Auto-Response-Suppress"] = "All"
    email.set_content(rendered.text, subtype="plain", charset="utf-8")
    if rendered.html is not None:
        email.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return email


class SmtpEmailChannel:
    """`Channel` for e-mail."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self._tls_context = tls_context
        self._clock = clock or SystemClock()

    async def send(self, message: OutgoingMessage, rendered: RenderedMessage) -> str:
        now = self._clock.now()
        refuse_if_expired(message, now)
        guard_rendered(rendered)  # NT-5, defence in depth at the last moment
        email = build_email(message, rendered, self.settings, date=now)
        s = self.settings
        try:
            _, response = await aiosmtplib.send(
                email,
                sender=s.from_address,
                recipients=[message.recipient],
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password,
                use_tls=s.security is SmtpSecurity.TLS,
                start_tls=s.security is SmtpSecurity.STARTTLS,
                validate_certs=s.validate_certs,
                cert_bundle=s.cert_bundle,
                tls_context=self._tls_context,
                timeout=s.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [r.code for r in error.recipients]
            reason = f"smtp recipient refused: {','.join(map(str, codes))}"
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentSendError(reason) from error
            raise RetryableSendError(reason) from error
        except aiosmtplib.SMTPResponseException as error:
            raise _classify_response(error) from error
        except (aiosmtplib.SMTPException, TimeoutError, OSError) as error:
            raise RetryableSendError(f"smtp transport: {type(error).__name__}") from error
        message_id = str(email["Message-ID"])
        log.info(
            "email_sent",
            message_key=message.message_key,
            kind=message.kind.value,
            smtp_response=response[:200],
        )
        return message_id


def _classify_response(
    error: aiosmtplib.SMTPResponseException,
) -> RetryableSendError | PermanentSendError:
    reason = f"smtp {error.code} ({type(error).__name__})"
    if not 500 <= error.code < 600:
        return RetryableSendError(reason)
    server_side = (
        aiosmtplib.SMTPHeloError,
        aiosmtplib.SMTPAuthenticationError,
        aiosmtplib.SMTPSenderRefused,
        aiosmtplib.SMTPConnectResponseError,
    )
    if isinstance(error, server_side):
        return RetryableSendError(reason)
    return PermanentSendError(reason)
