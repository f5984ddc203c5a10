"""What to send for an event (NT-2), to whom and on which channel. Pure.

`plan_messages(event, view)` returns at most one message per recipient and channel for one
event (NT-4); an event the notifier does not care about yields `[]`. The result does not
depend on whether `view` already had `event` folded in, so callers may plan before or after
`contacts.apply` - except for `AddressChanged`, whose letter goes to the address the event
replaces: it is planned before the fold (intake does so for every event).

NT-5, first line of defence: every context is built here from named fields only; event
models are never passed to templates wholesale. A sensitive document's title (DOC-3/DOC-5)
never enters a context, the mTAN purpose is reduced to a fixed set of keys, and the new
e-mail/mobile/postal address of a contact change never goes to the old one. `withheld_values(event)`
lists the values deliberately left out so that the renderer's guard can prove they did not
slip into the text anyway.

Interpretations (also in the README):
- CL-5: the claim's chosen channel, e-mail when never chosen; SMS chosen but no mobile
  known -> e-mail.
- DOC-5/DOC-4: a notice is sent for documents delivered to the mailbox; a document that
  goes by post (`delivery=post`) becomes a letter to the postal address of the view: a
  cover letter with the document enclosed (its PDF is fetched by the delivery worker, never
  here). Letters go also after an account cancellation: the portal account ends, the
  insurer's correspondence does not.
- ID-1: security notices (account locked, password changed, 2FA on/off, devices) go only to
  a verified address; the e-mail verification code and the answer to a registration that
  could not be completed go to the address the event names (they are the verification and
  the registration's answer). The registration answer never echoes the chosen username
  (anyone can type any address into the form: no text of theirs reaches a stranger).
- CL-3: a slipped expected completion date is a status notice too (same channel, CL-5).
- After `AccountCancelled` only the cancellation confirmation goes to the customer; claim,
  document, points and credential e-mails are no longer sent. Code events (login, mTAN,
  activation) carry their own recipient and are sent as identity issued them.
- Contact change (ID-8): an e-mail to the address that was valid before the change (the
  previous address if the e-mail changed, else the unchanged one), and an SMS to the
  previous mobile number if the mobile changed. Neither tells the new value.
- Move (CT-4, identity's AddressChanged): a letter "Bestätigung Ihrer Adressänderung" to
  the postal address the view held before the change, without the new address (as for
  ID-8, the new value never goes to the old contact point: whoever lives there now must not
  learn where the customer moved; the customer sees it after logging in); none when no
  address was known or the new one is the same. Also an e-mail to the verified address on
  file (not after a cancellation), without the new address either: the letter takes days,
  and a stranger who redirected the customer's post (to receive the next activation
  letter, ID-5) must be noticed at once. Planned with the view BEFORE the event is folded
  (as intake does): once folded, or when a newer identity event was folded already, it
  plans nothing - so a stale redelivery never confirms an address the customer has since
  left.
- Every message has `not_after`: the code's expiry for codes (NT-4), the expiry minus the
  postal transit time for activation letters, and a staleness horizon for notices, so a
  replay of old history (or a long outage) never mails customers about the distant past.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeAlias, assert_never, get_args

from contracts_schemas.base import Event
from contracts_schemas.claims import ClaimStatusChanged
from contracts_schemas.common import NotificationChannel, PostalAddress
from contracts_schemas.documents import DocumentAvailable, DocumentDelivery
from contracts_schemas.identity import (
    AccountCancelled,
    AccountLocked,
    ActivationCodeIssued,
    AddressChanged,
    ContactDetailsChanged,
    DeviceBound,
    DeviceRevoked,
    EmailVerificationCodeIssued,
    LoginCodeRequested,
    MtanRequested,
    PasswordChanged,
    PasswordResetRequested,
    RegistrationNotCompleted,
    TwoFactorDisabled,
    TwoFactorEnabled,
    UsernameReminderRequested,
)
from contracts_schemas.loyalty import PointsExpiryWarningIssued
from servicekit.clock import berlin_date, start_of_berlin_day

from notifier.domain.contacts import ContactView, is_stale_identity_event
from notifier.domain.guard import scan
from notifier.domain.messages import (
    ChannelKind,
    MessageKind,
    OutgoingMessage,
    TemplateValue,
    message_key,
    normalize_email,
    normalize_msisdn,
    postal_recipient,
    template_name,
)

PlannedEvent: TypeAlias = (
    ClaimStatusChanged
    | DocumentAvailable
    | ActivationCodeIssued
    | LoginCodeRequested
    | MtanRequested
    | UsernameReminderRequested
    | PasswordResetRequested
    | PointsExpiryWarningIssued
    | AccountCancelled
    | ContactDetailsChanged
    | AddressChanged
    | EmailVerificationCodeIssued
    | RegistrationNotCompleted
    | AccountLocked
    | PasswordChanged
    | TwoFactorEnabled
    | TwoFactorDisabled
    | DeviceBound
    | DeviceRevoked
)
SecurityEvent: TypeAlias = (
    AccountLocked
    | PasswordChanged
    | TwoFactorEnabled
    | TwoFactorDisabled
    | DeviceBound
    | DeviceRevoked
)
SECURITY_EVENT_TYPES: tuple[type[SecurityEvent], ...] = get_args(SecurityEvent)

#: The event types that can produce messages (NT-2), read off the union.
PLANNED_EVENT_TYPES: tuple[type[PlannedEvent], ...] = get_args(PlannedEvent)

#: ID-6 purposes of an mTAN, as fixed keys the SMS template can name in German. Identity's
#: spellings are normalised (lower case, `-`/space -> `_`) and looked up here; anything
#: else becomes `other` ("eine sicherheitsrelevante Änderung"). The raw purpose string is
#: never rendered.
MTAN_PURPOSES: Mapping[str, str] = {
    "password": "password",
    "password_change": "password",
    "change_password": "password",
    "email": "email",
    "email_change": "email",
    "change_email": "email",
    "mobile": "mobile",
    "mobile_change": "mobile",
    "change_mobile": "mobile",
    "bank_details": "bank_details",
    "bank_details_change": "bank_details",
    "change_bank_details": "bank_details",
    "iban": "bank_details",
    "disable_2fa": "disable_2fa",
    "2fa_off": "disable_2fa",
    "two_factor_off": "disable_2fa",
    "cancel_account": "cancel_account",
    "account_cancellation": "cancel_account",
    "cancellation": "cancel_account",
}


#: ID-1: why a registration was not completed, as keys the template can explain.
REGISTRATION_REASONS: frozenset[str] = frozenset({"username_taken"})


def security_notice_of(event: SecurityEvent) -> str:
    """The `notice` key of a security notice (the template's wording)."""
    match event:
        case AccountLocked():
            return "account_locked"
        case PasswordChanged():
            return "password_reset" if event.how == "reset" else "password_changed"
        case TwoFactorEnabled():
            return "two_factor_enabled"
        case TwoFactorDisabled():
            return "two_factor_disabled"
        case DeviceBound():
            return "device_bound"
        case DeviceRevoked():
            return "device_revoked"
        case _:
            assert_never(event)


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """Staleness horizons (`not_after` of notices) and number normalisation."""

    claim_status_fresh_for: timedelta = timedelta(days=7)
    document_notice_fresh_for: timedelta = timedelta(days=14)
    points_warning_fresh_for: timedelta = timedelta(days=30)
    confirmation_fresh_for: timedelta = timedelta(days=7)
    username_reminder_fresh_for: timedelta = timedelta(hours=24)
    registration_answer_fresh_for: timedelta = timedelta(hours=24)
    #: A document letter still goes after a print-queue or documents outage this long.
    document_letter_fresh_for: timedelta = timedelta(days=30)
    #: A move's confirmation to the old address still goes this long after the change (post
    #: is forwarded for months; a print-queue outage must not swallow it).
    address_letter_fresh_for: timedelta = timedelta(days=30)
    #: An activation letter must be in the print queue this long before the code expires.
    letter_transit: timedelta = timedelta(days=7)
    default_country_code: str = "49"


DEFAULT_PLAN_SETTINGS = PlanSettings()


def plan_messages(
    event: Event,
    view: ContactView | None,
    *,
    settings: PlanSettings = DEFAULT_PLAN_SETTINGS,
) -> list[OutgoingMessage]:
    """NT-2: the messages `event` triggers; `[]` for events the notifier ignores."""
    if not isinstance(event, PLANNED_EVENT_TYPES):
        return []
    if view is not None and view.customer_id != customer_of_planned(event):
        raise ValueError("view belongs to another customer than the event")
    planner = _Planner(event, view, settings)
    match event:
        case ClaimStatusChanged():
            return planner.claim_status_changed(event)
        case DocumentAvailable():
            return planner.document_available(event)
        case ActivationCodeIssued():
            return planner.activation_code(event)
        case LoginCodeRequested() | MtanRequested():
            return planner.sms_code(event)
        case UsernameReminderRequested():
            return planner.username_reminder(event)
        case PasswordResetRequested():
            return planner.password_reset(event)
        case PointsExpiryWarningIssued():
            return planner.points_expiry_warning(event)
        case AccountCancelled():
            return planner.account_cancelled(event)
        case ContactDetailsChanged():
            return planner.contact_details_changed(event)
        case AddressChanged():
            return planner.address_changed(event)
        case EmailVerificationCodeIssued():
            return planner.email_verification_code(event)
        case RegistrationNotCompleted():
            return planner.registration_not_completed(event)
        case (
            AccountLocked()
            | PasswordChanged()
            | TwoFactorEnabled()
            | TwoFactorDisabled()
            | DeviceBound()
            | DeviceRevoked()
        ):
            return planner.security_notice(event)
        case _:
            assert_never(event)


def customer_of_planned(event: PlannedEvent) -> str | None:
    """The customer whose view plans `event`; None for a registration that made no account
    (ID-1: RegistrationNotCompleted has no customer)."""
    if isinstance(event, RegistrationNotCompleted):
        return None
    return event.customer_id


def withheld_values(event: Event) -> frozenset[str]:
    """Values of `event` that the plan deliberately keeps out of every text (NT-5).

    The renderer's guard refuses a text that contains one of them.
    """
    values: set[str | None] = set()
    if isinstance(event, AddressChanged):
        values.add(event.address.street)
    elif isinstance(event, DocumentAvailable) and safe_document_title(event) is None:
        values |= {event.title, event.category}
    elif isinstance(event, ContactDetailsChanged):
        values |= {event.email, event.mobile}
    elif isinstance(event, MtanRequested) and mtan_purpose(event.purpose) == "other":
        values.add(event.purpose)
    elif isinstance(event, RegistrationNotCompleted):
        values.add(event.username)
    elif isinstance(event, DeviceBound) and shown_text(event.device_name) is None:
        values.add(event.device_name)
    elif isinstance(event, TwoFactorEnabled) and shown_text(event.mobile_masked) is None:
        values.add(event.mobile_masked)
    return frozenset(v.strip() for v in values if v and v.strip())


def safe_document_title(event: DocumentAvailable) -> str | None:
    """DOC-5/NT-5: the title to show, or `None` ("ein neues Dokument").

    `None` for sensitive documents (DOC-3), and for titles that the NT-5 scanner flags
    (an IBAN, a diagnosis code): such a notice goes out without the title rather than not at
    all.
    """
    title = " ".join(event.title.split())
    if event.sensitive or not title or scan(title):
        return None
    return title


def shown_text(value: str) -> str | None:
    """A short free text of an event (a device name), or None when empty or when the NT-5
    scanner flags it: the notice then goes without it rather than not at all."""
    text = " ".join(value.split())
    return None if not text or scan(text) else text


def mtan_purpose(purpose: str) -> str:
    key = "_".join(purpose.strip().lower().replace("-", " ").split())
    return MTAN_PURPOSES.get(key, "other")


def end_of_day(day: date) -> datetime:
    """The instant a Europe/Berlin calendar day ends (LOY-5: 'expires at the end of ...')."""
    return start_of_berlin_day(day + timedelta(days=1))


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class _Planner:
    def __init__(self, event: PlannedEvent, view: ContactView | None, settings: PlanSettings):
        self.event = event
        self.view = view
        self.settings = settings

    @property
    def active_view(self) -> ContactView | None:
        """The view if the customer can still be contacted for portal notices."""
        return self.view if self.view is not None and not self.view.cancelled else None

    @property
    def name(self) -> str | None:
        return self.view.name if self.view is not None else None

    def _message(
        self,
        *,
        kind: MessageKind,
        channel: ChannelKind,
        recipient: str,
        context: dict[str, TemplateValue],
        not_after: datetime,
        postal_address: PostalAddress | None = None,
        document_id: str | None = None,
    ) -> OutgoingMessage:
        event = self.event
        return OutgoingMessage(
            message_key=message_key(event.event_id, channel, recipient),
            kind=kind,
            channel=channel,
            customer_id=customer_of_planned(event) or event.aggregate_id,
            event_id=event.event_id,
            event_type=type(event).type_name(),
            occurred_at=event.occurred_at,
            recipient=recipient,
            postal_address=postal_address,
            document_id=document_id,
            template=template_name(channel, kind),
            context=context,
            not_after=not_after,
        )

    def _email(
        self,
        kind: MessageKind,
        address: str,
        context: dict[str, TemplateValue],
        not_after: datetime,
    ) -> OutgoingMessage:
        return self._message(
            kind=kind,
            channel=ChannelKind.EMAIL,
            recipient=normalize_email(address),
            context=context,
            not_after=not_after,
        )

    def _sms(
        self,
        kind: MessageKind,
        number: str,
        context: dict[str, TemplateValue],
        not_after: datetime,
    ) -> OutgoingMessage:
        return self._message(
            kind=kind,
            channel=ChannelKind.SMS,
            recipient=normalize_msisdn(number, self.settings.default_country_code),
            context=context,
            not_after=not_after,
        )

    # CL-4/CL-5
    def claim_status_changed(self, event: ClaimStatusChanged) -> list[OutgoingMessage]:
        view = self.active_view
        if view is None:
            return []
        context: dict[str, TemplateValue] = {
            "name": view.name,
            "claim_number": event.claim_number,
            "old_status": event.old_status.value,
            "new_status": event.new_status.value,
            "expected_completion_date": _iso(event.expected_completion_date),
            "changed_at": event.occurred_at.isoformat(),
            # CL-3: the date slipped (announced like a status change; the status may be
            # unchanged).
            "previous_expected_completion_date": _iso(_slipped_from(event)),
            "status_changed": event.new_status is not event.old_status,
        }
        not_after = event.occurred_at + self.settings.claim_status_fresh_for
        kind = MessageKind.CLAIM_STATUS_CHANGED
        if view.channel_for_claim(event.claim_id) is NotificationChannel.SMS and view.mobile:
            return [self._sms(kind, view.mobile, context, not_after)]
        if view.email:
            return [self._email(kind, view.email, context, not_after)]
        return []

    # DOC-5
    def document_available(self, event: DocumentAvailable) -> list[OutgoingMessage]:
        if event.delivery is DocumentDelivery.POST:
            return self.document_letter(event)
        view = self.active_view
        if view is None or not view.email:
            return []
        context: dict[str, TemplateValue] = {
            "name": view.name,
            "document_title": safe_document_title(event),
            "needs_second_factor": event.sensitive,
            "available_at": event.occurred_at.isoformat(),
        }
        not_after = event.occurred_at + self.settings.document_notice_fresh_for
        return [self._email(MessageKind.DOCUMENT_AVAILABLE, view.email, context, not_after)]

    # DOC-4: by post, whatever the account's state (the insurer's correspondence)
    def document_letter(self, event: DocumentAvailable) -> list[OutgoingMessage]:
        view = self.view
        if view is None or view.address is None:
            return []
        context: dict[str, TemplateValue] = {
            "name": view.name,
            "document_title": safe_document_title(event),
            "written_form": event.written_form,
            "issued_on": berlin_date(event.occurred_at).isoformat(),
        }
        return [
            self._message(
                kind=MessageKind.DOCUMENT_LETTER,
                channel=ChannelKind.LETTER,
                recipient=postal_recipient(view.address),
                context=context,
                not_after=event.occurred_at + self.settings.document_letter_fresh_for,
                postal_address=view.address,
                document_id=event.document_id,
            )
        ]

    # ID-3
    def activation_code(self, event: ActivationCodeIssued) -> list[OutgoingMessage]:
        context: dict[str, TemplateValue] = {
            "name": self.name,
            "code": event.code,
            "expires_on": berlin_date(event.expires_at).isoformat(),
            "issued_on": berlin_date(event.occurred_at).isoformat(),
        }
        return [
            self._message(
                kind=MessageKind.ACTIVATION_CODE,
                channel=ChannelKind.LETTER,
                recipient=postal_recipient(event.address),
                context=context,
                not_after=event.expires_at - self.settings.letter_transit,
                postal_address=event.address,
            )
        ]

    # ID-5, ID-6
    def sms_code(self, event: LoginCodeRequested | MtanRequested) -> list[OutgoingMessage]:
        context: dict[str, TemplateValue] = {
            "code": event.code,
            "expires_at": event.expires_at.isoformat(),
        }
        kind = MessageKind.LOGIN_CODE
        if isinstance(event, MtanRequested):
            kind = MessageKind.MTAN
            context["purpose"] = mtan_purpose(event.purpose)
        return [self._sms(kind, event.mobile, context, event.expires_at)]

    # ID-7
    def username_reminder(self, event: UsernameReminderRequested) -> list[OutgoingMessage]:
        if self.view is not None and self.view.cancelled:
            return []
        context: dict[str, TemplateValue] = {"name": self.name, "username": event.username}
        not_after = event.occurred_at + self.settings.username_reminder_fresh_for
        return [self._email(MessageKind.USERNAME_REMINDER, event.email, context, not_after)]

    # ID-7
    def password_reset(self, event: PasswordResetRequested) -> list[OutgoingMessage]:
        if self.view is not None and self.view.cancelled:
            return []
        context: dict[str, TemplateValue] = {
            "name": self.name,
            "reset_url": event.reset_url,
            "expires_at": event.expires_at.isoformat(),
        }
        return [self._email(MessageKind.PASSWORD_RESET, event.email, context, event.expires_at)]

    # LOY-5
    def points_expiry_warning(self, event: PointsExpiryWarningIssued) -> list[OutgoingMessage]:
        view = self.active_view
        if view is None or not view.email:
            return []
        context: dict[str, TemplateValue] = {
            "name": view.name,
            "points": event.points,
            "expires_on": event.expires_on.isoformat(),
        }
        not_after = min(
            event.occurred_at + self.settings.points_warning_fresh_for,
            end_of_day(event.expires_on),
        )
        return [self._email(MessageKind.POINTS_EXPIRY_WARNING, view.email, context, not_after)]

    # ID-9
    def account_cancelled(self, event: AccountCancelled) -> list[OutgoingMessage]:
        view = self.view
        if view is None or not view.email:
            return []
        context: dict[str, TemplateValue] = {
            "name": view.name,
            "cancelled_at": event.occurred_at.isoformat(),
        }
        not_after = event.occurred_at + self.settings.confirmation_fresh_for
        return [self._email(MessageKind.ACCOUNT_CANCELLED, view.email, context, not_after)]

    # ID-1/ID-8: the only message to an address before it is verified
    def email_verification_code(self, event: EmailVerificationCodeIssued) -> list[OutgoingMessage]:
        if self.view is not None and self.view.cancelled:
            return []
        context: dict[str, TemplateValue] = {
            "name": self.name,
            "code": event.code,
            "expires_at": event.expires_at.isoformat(),
        }
        kind = MessageKind.EMAIL_VERIFICATION_CODE
        return [self._email(kind, event.email, context, event.expires_at)]

    # ID-1: the enumeration-safe registration's answer; never echoes the username
    def registration_not_completed(self, event: RegistrationNotCompleted) -> list[OutgoingMessage]:
        reason = event.reason if event.reason in REGISTRATION_REASONS else "other"
        context: dict[str, TemplateValue] = {"reason": reason}
        not_after = event.occurred_at + self.settings.registration_answer_fresh_for
        kind = MessageKind.REGISTRATION_NOT_COMPLETED
        return [self._email(kind, event.email, context, not_after)]

    # ID-2/ID-4/ID-5/ID-7: security notices, to the verified address only
    def security_notice(self, event: SecurityEvent) -> list[OutgoingMessage]:
        view = self.active_view
        if view is None or not view.email or not view.email_verified:
            return []
        context: dict[str, TemplateValue] = {
            "name": view.name,
            "notice": security_notice_of(event),
            "at": event.occurred_at.isoformat(),
            "locked_until": None,
            "mobile_masked": None,
            "device_name": None,
        }
        match event:
            case AccountLocked():
                context["locked_until"] = event.locked_until.isoformat()
            case TwoFactorEnabled():
                context["mobile_masked"] = shown_text(event.mobile_masked)
            case DeviceBound():
                context["device_name"] = shown_text(event.device_name)
            case PasswordChanged() | TwoFactorDisabled() | DeviceRevoked():
                pass
            case _:
                assert_never(event)
        not_after = event.occurred_at + self.settings.confirmation_fresh_for
        return [self._email(MessageKind.SECURITY_NOTICE, view.email, context, not_after)]

    # CT-4 / NT-2: a move confirmed by letter to the old address, and told by e-mail
    def address_changed(self, event: AddressChanged) -> list[OutgoingMessage]:
        view = self.view
        if view is None or is_stale_identity_event(view, event):
            return []
        old = view.address
        if old is not None and postal_recipient(old) == postal_recipient(event.address):
            return []
        messages: list[OutgoingMessage] = []
        if old is not None:
            messages.append(self._address_letter(event, old))
        active = self.active_view
        if active is not None and active.email and active.email_verified:
            context: dict[str, TemplateValue] = {
                "name": active.name,
                "changed_at": event.occurred_at.isoformat(),
                "letter_to_old_address": old is not None,
            }
            not_after = event.occurred_at + self.settings.confirmation_fresh_for
            kind = MessageKind.ADDRESS_CHANGED
            messages.append(self._email(kind, active.email, context, not_after))
        return messages

    def _address_letter(self, event: AddressChanged, old: PostalAddress) -> OutgoingMessage:
        # Like ID-8's e-mail and mobile: the new value never goes to the old contact point
        # (whoever lives there now must not learn where the customer moved).
        context: dict[str, TemplateValue] = {
            "name": self.name,
            "changed_at": event.occurred_at.isoformat(),
        }
        return self._message(
            kind=MessageKind.ADDRESS_CHANGED,
            channel=ChannelKind.LETTER,
            recipient=postal_recipient(old),
            context=context,
            not_after=event.occurred_at + self.settings.address_letter_fresh_for,
            postal_address=old,
        )

    # ID-8 / NT-2: confirmation to the old address
    def contact_details_changed(self, event: ContactDetailsChanged) -> list[OutgoingMessage]:
        view = self.view
        if view is not None and view.cancelled:
            return []
        old_email = _old_value(event.previous_email, event.email, view.email if view else None)
        old_mobile = _old_value(event.previous_mobile, event.mobile, view.mobile if view else None)
        email_changed = _changed(event.email, old_email, normalize_email)
        mobile_changed = _changed(
            event.mobile,
            old_mobile,
            lambda n: normalize_msisdn(n, self.settings.default_country_code),
        )
        if not (email_changed or mobile_changed):
            return []
        context: dict[str, TemplateValue] = {
            "name": self.name,
            "email_changed": email_changed,
            "mobile_changed": mobile_changed,
            "changed_at": event.occurred_at.isoformat(),
        }
        not_after = event.occurred_at + self.settings.confirmation_fresh_for
        kind = MessageKind.CONTACT_DETAILS_CHANGED
        messages: list[OutgoingMessage] = []
        if old_email:
            messages.append(self._email(kind, old_email, context, not_after))
        if mobile_changed and old_mobile:
            messages.append(self._sms(kind, old_mobile, context, not_after))
        return messages


def _slipped_from(event: ClaimStatusChanged) -> date | None:
    """CL-3: the date announced before, when the new expected date is later than it."""
    before, now = event.previous_expected_completion_date, event.expected_completion_date
    if before is None or now is None or now <= before:
        return None
    return before


def _old_value(previous: str | None, new: str | None, known: str | None) -> str | None:
    """The value before the change: the event's `previous_*`, else the view's value unless
    the view already holds the new one (planning after folding)."""
    if previous:
        return previous
    if known and (new is None or known.strip().lower() != new.strip().lower()):
        return known
    return None


def _changed(new: str | None, old: str | None, normalize: Callable[[str], str]) -> bool:
    if new is None:
        return False
    return old is None or normalize(new) != normalize(old)
