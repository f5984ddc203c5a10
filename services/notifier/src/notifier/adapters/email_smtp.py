"""E-mail over SMTP (NT-1), with aiosmtplib.

- Transport security per environment: `none` (local relay/tests), `starttls` (submission
  port 587) or `tls` (implicit TLS, port 465); optional AUTH; certificate validation on by
  default.
- `Message-ID: <message_key@domain>`: derived from the NT-4 key, so every resend of the same
  message carries the same id. Receiving MTAs, mailbox providers and the operators' log
  search recognise a duplicate; the id is also the provider reference this channel returns
  (MTAs log it next to their queue id, which is logged here too).
- multipart/alternative: the plain text first, the HTML alternative second.
- The wire bytes are built once per attempt, straight from the rendered text (`email_bytes`:
  7-bit clean - RFC 2047 headers, quoted-printable UTF-8 parts, CRLF), and handed to the
  session as they are: no `EmailMessage` whose headers are parsed on assignment and refolded
  again when aiosmtplib flattens it. Addresses that need SMTPUTF8 take the stdlib path.
- Sessions are persistent and pooled per relay host (`smtp_pool.py`); a reused session
  the relay had dropped is replaced and the message sent once on the fresh one.

Error classification (see `channel.py`):
- retryable: connection errors, timeouts, disconnects, 4xx replies, and failures of the
  server/account rather than of this message (HELO, AUTH, MAIL FROM refused, STARTTLS not
  offered), so a fixed configuration sends the backlog. A timeout or disconnect once the
  mail transaction began is an answer lost: the server may have accepted the message, so
  the attempt is recorded `outcome_unknown: ...` (README, "The crash window");
- permanent: a 5xx reply to the recipient (RCPT TO) or the content (DATA).
"""

from __future__ import annotations

import asyncio
import binascii
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.header import Header
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr
from enum import StrEnum

import aiosmtplib
import structlog
from servicekit.clock import Clock, SystemClock

from notifier.adapters.channel import PermanentSendError, RetryableSendError, refuse_if_expired
from notifier.adapters.render import guard_rendered
from notifier.adapters.smtp_pool import Session, SessionPoolClosed, SmtpEndpoint, SmtpSessionPool
from notifier.domain.delivery import OUTCOME_UNKNOWN
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
    #: Persistent sessions to the relay (at most; sends beyond wait for a free one).
    pool_size: int = 8
    #: An idle session older than this is replaced rather than reused.
    pool_idle_seconds: float = 60.0
    #: Messages one session carries before it is retired (relays cap them).
    session_max_messages: int = 100


def message_id_for(message_key: str, domain: str) -> str:
    return f"<{message_key}@{domain}>"


def build_email(
    message: OutgoingMessage,
    rendered: RenderedMessage,
    settings: SmtpSettings,
    *,
    date: datetime,
) -> EmailMessage:
    """The MIME message for `message` as an `EmailMessage` (pure apart from `date`): the
    bytes of `email_bytes`, parsed (or, for addresses that need SMTPUTF8, built with the
    stdlib)."""
    raw = email_bytes(message, rendered, settings, date=date)
    if raw is None:
        return _stdlib_email(message, rendered, settings, date=date)
    parsed = message_from_bytes(raw, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def email_bytes(
    message: OutgoingMessage,
    rendered: RenderedMessage,
    settings: SmtpSettings,
    *,
    date: datetime,
) -> bytes | None:
    """The message as it goes on the wire (7-bit, CRLF), or None when an address is not
    ASCII (SMTPUTF8: left to the stdlib and aiosmtplib)."""
    if message.channel is not ChannelKind.EMAIL:
        raise ValueError("not an e-mail message")
    if not (message.recipient.isascii() and settings.from_address.isascii()):
        return None
    raw_values = (message.recipient, rendered.subject, settings.from_name, settings.reply_to)
    if any(v and ("\n" in v or "\r" in v) for v in raw_values):
        raise ValueError("header values may not contain line breaks")  # header injection
    headers = [
        ("From", formataddr((settings.from_name, settings.from_address))),
        ("To", message.recipient),
        *([("Reply-To", settings.reply_to)] if settings.reply_to else []),
        ("Subject", _encoded_header("Subject", rendered.subject)),
        ("Date", format_datetime(date)),
        ("Message-ID", message_id_for(message.message_key, settings.message_id_domain)),
        ("Content-Language", "de"),
        # RFC 3834: automatic message; suppress out-of-office replies.
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
        ("MIME-Version", "1.0"),
    ]
    lines = [f"{name}: {value}" for name, value in headers]
    if rendered.html is None:
        lines += _part("plain", rendered.text)
    else:
        # "=_" never occurs in quoted-printable text: the boundary cannot collide.
        boundary = f"=_alt_{message.message_key}"
        lines += ["Content-Type: multipart/alternative;", f' boundary="{boundary}"', ""]
        for subtype, text in (("plain", rendered.text), ("html", rendered.html)):
            lines += [f"--{boundary}", *_part(subtype, text)]
        lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("ascii")


def _part(subtype: str, text: str) -> list[str]:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
    return [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        *encoded.split("\n"),  # ends with "": the body's last line break
    ]


def _encoded_header(name: str, value: str) -> str:
    """RFC 2047 for non-ASCII or long values (folded), the value itself otherwise."""
    if value.isascii() and len(value) + len(name) + 2 <= 78:
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _stdlib_email(
    message: OutgoingMessage, rendered: RenderedMessage, settings: SmtpSettings, *, date: datetime
) -> EmailMessage:
    email = EmailMessage()
    email["From"] = formataddr((settings.from_name, settings.from_address))
    email["To"] = message.recipient
    if settings.reply_to:
        email["Reply-To"] = settings.reply_to
    email["Subject"] = rendered.subject
    email["Date"] = format_datetime(date)
    email["Message-ID"] = message_id_for(message.message_key, settings.message_id_domain)
    email["Content-Language"] = "de"
    email["Auto-Submitted"] = "auto-generated"
    email["X-Auto-Response-Suppress"] = "All"
    email.set_content(rendered.text, subtype="plain", charset="utf-8")
    if rendered.html is not None:
        email.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return email


def pool_for(settings: SmtpSettings, tls_context: ssl.SSLContext | None) -> SmtpSessionPool:
    """The session pool to `settings.host` (one relay per environment: one pool)."""
    endpoint = SmtpEndpoint(
        host=settings.host,
        port=settings.port,
        use_tls=settings.security is SmtpSecurity.TLS,
        start_tls=settings.security is SmtpSecurity.STARTTLS,
        username=settings.username,
        password=settings.password,
        validate_certs=settings.validate_certs,
        cert_bundle=settings.cert_bundle,
        tls_context=tls_context,
        timeout=settings.timeout,
    )
    return SmtpSessionPool(
        endpoint,
        size=settings.pool_size,
        idle_seconds=settings.pool_idle_seconds,
        max_messages=settings.session_max_messages,
    )


class SmtpEmailChannel:
    """`Channel` for e-mail, over the pooled sessions of `pool`."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool_for(settings, tls_context)
        self._clock = clock or SystemClock()

    async def send(self, message: OutgoingMessage, rendered: RenderedMessage) -> str:
        now = self._clock.now()
        refuse_if_expired(message, now)
        guard_rendered(rendered)  # NT-5, defence in depth at the last moment
        wire: bytes | EmailMessage | None = email_bytes(message, rendered, self.settings, date=now)
        if wire is None:
            wire = _stdlib_email(message, rendered, self.settings, date=now)
        attempt = _Attempt()
        try:
            # Waiting for a session and connecting share one timeout, the exchange has
            # another: within the lease rule (more than twice the channel timeout).
            async with asyncio.timeout(2 * self.settings.timeout):
                response = await self._deliver(message.recipient, wire, attempt)
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [r.code for r in error.recipients]
            reason = f"smtp recipient refused: {','.join(map(str, codes))}"
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentSendError(reason) from error
            raise RetryableSendError(reason) from error
        except aiosmtplib.SMTPResponseException as error:
            raise _classify_response(error) from error
        except (aiosmtplib.SMTPException, SessionPoolClosed, TimeoutError, OSError) as error:
            if attempt.began and isinstance(error, ANSWER_LOST):
                raise RetryableSendError(f"{OUTCOME_UNKNOWN}: smtp answer lost "
                                         f"({type(error).__name__})") from error  # fmt: skip
            raise RetryableSendError(f"smtp transport: {type(error).__name__}") from error
        log.info(
            "email_sent",
            message_key=message.message_key,
            kind=message.kind.value,
            smtp_response=response[:200],
        )
        return message_id_for(message.message_key, self.settings.message_id_domain)

    async def close(self) -> None:
        """Quit the pooled sessions (service shutdown)."""
        await self.pool.close()

    async def _deliver(self, recipient: str, wire: bytes | EmailMessage, attempt: _Attempt) -> str:
        async with self.pool.session() as session:
            try:
                return await self._exchange(session, recipient, wire, attempt)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                if not session.reused:
                    raise
                # The relay dropped the idle session: once more on a fresh one.
                await self.pool.reopen(session)
                return await self._exchange(session, recipient, wire, attempt)

    async def _exchange(
        self, session: Session, recipient: str, wire: bytes | EmailMessage, attempt: _Attempt
    ) -> str:
        attempt.began = True
        session.messages += 1
        sender = self.settings.from_address
        if isinstance(wire, bytes):
            _, response = await session.client.sendmail(sender, [recipient], wire)
        else:
            _, response = await session.client.send_message(
                wire, sender=sender, recipients=[recipient]
            )
        return response


#: Errors that, once the mail transaction began, leave its outcome unknown.
ANSWER_LOST = (TimeoutError, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected,
               ConnectionError)  # fmt: skip


@dataclass
class _Attempt:
    """One send: whether its mail transaction began (a session was had, MAIL FROM sent)."""

    began: bool = False


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
