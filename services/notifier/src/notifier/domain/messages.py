"""The messages the notifier sends, and how they are keyed (NT-1, NT-4).

An `OutgoingMessage` is decided by `plan.plan_messages` from one triggering event. It is
pure data: what to send (template + a whitelisted context), to whom, on which channel,
and until when it may be sent at all. It is JSON-serialisable (pydantic, frozen), so the
message store can keep it as one row.

NT-4 "one message per triggering event, recipient and channel" is carried by
`message_key`: a UUIDv5 of (event id, channel, normalised recipient). Re-delivered or
replayed events plan the same keys; the store's unique constraint on the key turns a
second insert into a no-op, and every adapter hands the key to the provider (SMTP
Message-ID, SMS client reference, print-job manifest) so a resend is recognisable. The key
holds no personal data, so it may appear in logs and metrics (OPS-2).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from uuid import UUID, uuid5

from contracts_schemas.common import PostalAddress
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class ChannelKind(StrEnum):
    """NT-1 channels."""

    EMAIL = "email"
    SMS = "sms"
    LETTER = "letter"


class MessageKind(StrEnum):
    """One kind per NT-2 message; with the channel it names the template."""

    CLAIM_STATUS_CHANGED = "claim_status_changed"
    DOCUMENT_AVAILABLE = "document_available"
    ACTIVATION_CODE = "activation_code"
    LOGIN_CODE = "login_code"
    MTAN = "mtan"
    USERNAME_REMINDER = "username_reminder"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a message kind, not a secret
    POINTS_EXPIRY_WARNING = "points_expiry_warning"
    ACCOUNT_CANCELLED = "account_cancelled"
    CONTACT_DETAILS_CHANGED = "contact_details_changed"
    #: ID-1/ID-8: the code proving an e-mail address (the only message to an address
    #: before it is verified).
    EMAIL_VERIFICATION_CODE = "email_verification_code"
    #: ID-1: a registration could not be completed (the username is taken); the answer of
    #: the enumeration-safe registration, sent to the address the registrant gave.
    REGISTRATION_NOT_COMPLETED = "registration_not_completed"
    #: ID-4/ID-2/ID-5: account locked, password changed or reset, 2FA on/off, device bound
    #: or removed (one template; the context's `notice` says which).
    SECURITY_NOTICE = "security_notice"
    #: DOC-4/DOC-5: a document that goes by post, as a cover letter with the document's PDF
    #: (fetched from the documents service when the letter is sent) enclosed.
    DOCUMENT_LETTER = "document_letter"
    #: NT-2/CT-4: a move (identity's AddressChanged) confirmed by letter to the old postal
    #: address, and told by e-mail to the verified address on file.
    ADDRESS_CHANGED = "address_changed"


#: Kinds that carry a code, token or credential: never sent after `not_after` (NT-4) and
#: rate-limited in their own, stricter bucket (NT-6).
CODE_KINDS: frozenset[MessageKind] = frozenset(
    {
        MessageKind.ACTIVATION_CODE,
        MessageKind.LOGIN_CODE,
        MessageKind.MTAN,
        MessageKind.PASSWORD_RESET,
        MessageKind.USERNAME_REMINDER,
        MessageKind.EMAIL_VERIFICATION_CODE,
        # No code, but an e-mail anyone can trigger for any address: the stricter bucket
        # (drop on a flood) stops mail bombing through the registration form.
        MessageKind.REGISTRATION_NOT_COMPLETED,
    }
)

#: A template context holds only JSON scalars. Dates and datetimes are ISO-8601 strings
#: (the template filters format them for Germany), so a stored message round-trips exactly.
TemplateValue = str | int | bool | None

#: Fixed namespace of the notifier's message keys (never change it: keys would change).
MESSAGE_KEY_NAMESPACE = UUID("6f0c8a52-3d0e-5b8e-9a4f-2f3c1d7e9b10")


class OutgoingMessage(BaseModel):
    """One message to one recipient on one channel, decided from one event (NT-4)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_key: str = Field(min_length=1, max_length=64)
    kind: MessageKind
    channel: ChannelKind
    #: The customer; for a registration that never made an account (ID-1) the event's
    #: aggregate id (`registration-<hash>`), which holds no personal data.
    customer_id: str
    #: The triggering event.
    event_id: UUID
    event_type: str
    occurred_at: AwareDatetime
    #: Normalised e-mail address, E.164 number (`+49...`), or for letters the canonical
    #: one-line form of `postal_address`.
    recipient: str = Field(min_length=1)
    postal_address: PostalAddress | None = None
    #: DOC-4: the document a letter encloses; its PDF is fetched from the documents service
    #: by the delivery worker when the letter is sent (never at intake).
    document_id: str | None = None
    #: Template name relative to the template root, e.g. `email/claim_status_changed.txt`.
    template: str
    #: Whitelisted, non-sensitive values only (NT-5); codes only for code kinds.
    context: dict[str, TemplateValue]
    #: Never sent at or after this instant (NT-4 for codes; a staleness horizon for
    #: notices, so that replaying old history never mails customers about the past).
    not_after: AwareDatetime | None = None

    @property
    def is_code(self) -> bool:
        return self.kind in CODE_KINDS


class RenderedMessage(BaseModel):
    """The final text of a message. `subject` is empty for SMS; `html` only for e-mail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str
    text: str
    html: str | None = None


def template_name(channel: ChannelKind, kind: MessageKind) -> str:
    return f"{channel.value}/{kind.value}.txt"


def message_key(event_id: UUID, channel: ChannelKind, recipient: str) -> str:
    """NT-4 idempotency key: deterministic in (event, channel, normalised recipient)."""
    return str(uuid5(MESSAGE_KEY_NAMESPACE, f"{event_id}|{channel.value}|{recipient}"))


def normalize_email(address: str) -> str:
    """Trimmed and lower-cased (providers treat addresses case-insensitively in practice)."""
    return address.strip().lower()


_PHONE_NOISE = re.compile(r"[\s\-./()]")


def normalize_msisdn(number: str, default_country_code: str = "49") -> str:
    """E.164 with a leading `+`: `0151 234 567-89` -> `+4915123456789`.

    Accepts `+49...`, `0049...`, `+49 (0) 151...` and national numbers (`0151...`, taken to
    be in `default_country_code`). Anything left that is not 7-15 digits is returned as
    `+<digits>` so that the provider rejects it (a permanent error) rather than us guessing.
    """
    raw = number.strip().replace("(0)", "")
    digits = _PHONE_NOISE.sub("", raw)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0"):
        digits = default_country_code + digits[1:]
    digits = "".join(ch for ch in digits if ch.isdigit())
    return f"+{digits}"


def postal_recipient(address: PostalAddress) -> str:
    """Canonical one-line form of a postal address (key and rate-limit bucket of letters)."""
    parts = (address.recipient, address.street, address.postal_code, address.city, address.country)
    folded = (" ".join(unicodedata.normalize("NFKC", p).split()).casefold() for p in parts)
    return " | ".join(folded)


def masked_recipient(channel: ChannelKind, recipient: str) -> str:
    """What operators see of a recipient: enough to tell two apart, not to contact anyone.

    `erika.m@example.org` -> `e***@example.org`, `+4915123456789` -> `+49*******6789`, a
    letter -> its postcode and country (`51147 de`).
    """
    if channel is ChannelKind.EMAIL:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}" if domain else "***"
    if channel is ChannelKind.SMS:
        digits = recipient.removeprefix("+")
        if len(digits) <= 6:
            return "+***"
        return f"+{digits[:2]}{'*' * (len(digits) - 6)}{digits[-4:]}"
    parts = [p.strip() for p in recipient.split("|")]
    return f"{parts[2]} {parts[4]}" if len(parts) == 5 else "***"
