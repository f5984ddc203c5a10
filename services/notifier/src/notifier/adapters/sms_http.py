"""SMS over HTTP (NT-1), in the shape of the Vonage Messages API (v1).

Provider shape (Vonage Messages API, `POST {base_url}/v1/messages`):

- Authentication: HTTP Basic with the API key and secret (the API also accepts a JWT;
  Basic is enough for a server-side sender).
- JSON body for an SMS::

      {"message_type": "text", "channel": "sms",
       "to": "4915123456789",          # E.164 without "+" or "00"
       "from": "Allianz",              # alphanumeric sender id or a number
       "text": "...",                  # up to 1000 characters
       "client_ref": "<message_key>",  # echoed in every status webhook
       "ttl": 300,                     # seconds the network may try to deliver
       "sms": {"encoding_type": "text" | "unicode"},
       "webhook_url": "..."}           # optional: per-message status webhook

- Success: `202 Accepted` with `{"message_uuid": "..."}`; errors are RFC 7807 problem
  documents (`type`, `title`, `detail`) with 4xx/5xx status codes, throttling as 429.

Idempotency and the crash window. The notifier's NT-4 `message_key` goes out as
`client_ref`: every delivery receipt (status webhook) for the message carries it, so a
retried send is *recognisable* and a receipt can be matched to its delivery row even if
the notifier crashed before it stored the `message_uuid`. The Messages API does **not**
de-duplicate on `client_ref`: if the provider accepted a request and the notifier crashed,
or the response was lost (read timeout) before the acceptance was recorded, the retry
sends a second SMS. That window cannot be closed from our side. It is harmless for codes
(the same code again, and `ttl` stops delivery after it expired) and rare for notices; the
status webhook lets operators see such duplicates by `client_ref`.

Codes are never delivered after they expired (NT-4): a message past `not_after` is refused
before the request, and `ttl` is set to the remaining validity so the network drops it
rather than delivering it late (clamped to the configured minimum).

Classification: 5xx, 429, 408 and transport errors/timeouts are retryable (429 honours
`Retry-After`); other 4xx are permanent (bad number, content rejected; also 401/402/403 by
default - add them to `retryable_statuses` to retry through a credential or balance
problem instead of dead-lettering).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
import structlog
from servicekit.clock import Clock, SystemClock

from notifier.adapters.channel import PermanentSendError, RetryableSendError, refuse_if_expired
from notifier.adapters.render import guard_rendered
from notifier.domain.messages import ChannelKind, OutgoingMessage, RenderedMessage

log = structlog.get_logger(__name__)

#: GSM 03.38 basic character set (one unit each) and its extension table (two units each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
MAX_TEXT_LENGTH = 1000


@dataclass(frozen=True, slots=True)
class SmsSegments:
    encoding: Literal["text", "unicode"]
    units: int
    segments: int


def sms_segments(text: str) -> SmsSegments:
    """Encoding and segment count of `text` (160/153 GSM-7 units, 70/67 UCS-2 characters)."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        single, multi = 160, 153
        encoding: Literal["text", "unicode"] = "text"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi = 70, 67
        encoding = "unicode"
    segments = 1 if units <= single else -(-units // multi)
    return SmsSegments(encoding=encoding, units=units, segments=segments)


@dataclass(frozen=True, slots=True)
class VonageSmsSettings:
    api_key: str
    api_secret: str = field(repr=False)
    #: Alphanumeric sender id (at most 11 characters) or a number.
    sender: str = "Allianz"
    #: `https://api.nexmo.com`, or a regional host (`https://api-eu.vonage.com`).
    base_url: str = "https://api.nexmo.com"
    path: str = "/v1/messages"
    timeout: float = 10.0
    #: Optional per-message status webhook (delivery receipts carrying `client_ref`).
    webhook_url: str | None = None
    min_ttl_seconds: int = 60
    max_ttl_seconds: int = 259_200
    retryable_statuses: frozenset[int] = frozenset({408, 425, 429})


def build_request_body(
    message: OutgoingMessage, rendered: RenderedMessage, settings: VonageSmsSettings, now: datetime
) -> dict[str, Any]:
    """The Messages API JSON body for one SMS (pure)."""
    if message.channel is not ChannelKind.SMS:
        raise ValueError("not an SMS message")
    text = rendered.text.strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise PermanentSendError("sms text longer than 1000 characters")
    body: dict[str, Any] = {
        "message_type": "text",
        "channel": "sms",
        "to": message.recipient.removeprefix("+"),
        "from": settings.sender,
        "text": text,
        "client_ref": message.message_key,
        "sms": {"encoding_type": sms_segments(text).encoding},
    }
    if message.not_after is not None:
        remaining = int((message.not_after - now).total_seconds())
        body["ttl"] = max(settings.min_ttl_seconds, min(remaining, settings.max_ttl_seconds))
    if settings.webhook_url:
        body["webhook_url"] = settings.webhook_url
    return body


class VonageSmsChannel:
    """`Channel` for SMS; the `httpx.AsyncClient` is injected (and owned) by the caller."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: VonageSmsSettings,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self.settings = settings
        self._clock = clock or SystemClock()

    async def send(self, message: OutgoingMessage, rendered: RenderedMessage) -> str:
        now = self._clock.now()
        refuse_if_expired(message, now)
        guard_rendered(rendered)  # NT-5, defence in depth at the last moment
        s = self.settings
        body = build_request_body(message, rendered, s, now)
        try:
            response = await self._client.post(
                s.base_url.rstrip("/") + s.path,
                json=body,
                auth=httpx.BasicAuth(s.api_key, s.api_secret),
                headers={"Accept": "application/json"},
                timeout=s.timeout,
            )
        except httpx.TimeoutException as error:
            # A read timeout may follow an acceptance: the retry may duplicate (see above).
            raise RetryableSendError(f"sms timeout: {type(error).__name__}") from error
        except httpx.TransportError as error:
            raise RetryableSendError(f"sms transport: {type(error).__name__}") from error
        return self._result(message, response, now)

    def _result(self, message: OutgoingMessage, response: httpx.Response, now: datetime) -> str:
        status = response.status_code
        if 200 <= status < 300:
            message_uuid = _json_field(response, "message_uuid")
            log.info(
                "sms_sent", message_key=message.message_key, kind=message.kind.value, status=status
            )
            # Accepted without an id (should not happen): the key still matches receipts.
            return message_uuid or message.message_key
        reason = f"sms http {status}"
        title = _json_field(response, "title")
        if title:
            reason = f"{reason}: {title[:120]}"
        if status >= 500 or status in self.settings.retryable_statuses:
            raise RetryableSendError(reason, retry_after=_retry_after(response, now))
        raise PermanentSendError(reason)


def _json_field(response: httpx.Response, name: str) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None


def _retry_after(response: httpx.Response, now: datetime) -> timedelta | None:
    header = response.headers.get("Retry-After")
    if not header:
        return None
    if header.strip().isdigit():
        return timedelta(seconds=int(header.strip()))
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(timedelta(0), when - now)
