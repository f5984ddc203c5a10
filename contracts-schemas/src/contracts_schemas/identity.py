"""Events of the identity context (ID-1..ID-10), topic `portal.identity.customer.v1`.

Code-carrying events (activation, login/mTAN codes, reset tokens) go to their own topic
`portal.identity.codes.v1` with short retention; they carry the expiry so that no code
is sent after it expired (NT-4).
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import AwareDatetime, Field

from contracts_schemas.base import Event, Identifier, Text
from contracts_schemas.common import PostalAddress


class CustomerEvent(Event):
    context: ClassVar[str] = "identity"

    customer_id: Identifier = Field(min_length=1, max_length=100)


class CustomerRegistered(CustomerEvent):
    first_name: Text = Field(min_length=1, max_length=100)
    last_name: Text = Field(min_length=1, max_length=100)
    birth_date: date
    natural_person: bool = True
    address: PostalAddress
    email: Text = Field(min_length=3, max_length=254)
    mobile: Text | None = Field(default=None, max_length=30)


class AccountActivated(CustomerEvent):
    """ID-3: the activation code was entered; contracts, mailbox and documents appear."""


class AccountCancelled(CustomerEvent):
    """ID-9: the portal account was cancelled."""


class ContactDetailsChanged(CustomerEvent):
    """E-mail and/or mobile changed; the old values let the notifier warn the old address."""

    email: Text | None = None
    previous_email: Text | None = None
    mobile: Text | None = None
    previous_mobile: Text | None = None


class AddressChanged(CustomerEvent):
    address: PostalAddress


class CodeEvent(CustomerEvent):
    expires_at: AwareDatetime


class ActivationCodeIssued(CodeEvent):
    """ID-3: sent by letter to the policyholder's postal address."""

    code: Identifier = Field(min_length=4, max_length=32)
    address: PostalAddress


class LoginCodeRequested(CodeEvent):
    """ID-5: SMS code for the second login factor."""

    code: Identifier = Field(min_length=4, max_length=12)
    mobile: Text = Field(min_length=3, max_length=30)


class MtanRequested(CodeEvent):
    """ID-6: one-time SMS code confirming a security-relevant change."""

    code: Identifier = Field(min_length=4, max_length=12)
    mobile: Text = Field(min_length=3, max_length=30)
    purpose: Text = Field(min_length=1, max_length=50)


class UsernameReminderRequested(CustomerEvent):
    """ID-7: the username goes to the stored e-mail."""

    email: Text
    username: Text


class PasswordResetRequested(CodeEvent):
    """ID-7: single-use, expiring reset link."""

    email: Text
    reset_url: Text = Field(min_length=1, max_length=2000)


class EmailVerificationCodeIssued(CodeEvent):
    """ID-1/ID-8: a code proving that the customer reads this e-mail address. The only
    message sent to an address before it is verified."""

    code: Identifier = Field(min_length=4, max_length=32)
    email: Text = Field(min_length=3, max_length=254)


class EmailVerified(CustomerEvent):
    """ID-1: the address may now be used for everything (notices, reminders, resets)."""

    email: Text = Field(min_length=3, max_length=254)


class RegistrationNotCompleted(Event):
    """ID-1: a registration that could not be completed (the username is taken). The API
    answers as for any registration (no enumeration); the registrant learns it by e-mail."""

    context: ClassVar[str] = "identity"

    email: Text = Field(min_length=3, max_length=254)
    username: Text = Field(min_length=1, max_length=100)
    reason: Identifier = Field(min_length=1, max_length=50)


class PasswordChanged(CustomerEvent):
    """ID-2/ID-7: the password was changed (`change`) or reset (`reset`); the customer is
    told by e-mail, every session ended."""

    how: Identifier = Field(min_length=1, max_length=20)


class AccountLocked(CustomerEvent):
    """ID-4: repeated failed logins locked the login until `locked_until` (temporarily)."""

    locked_until: AwareDatetime


class TwoFactorEnabled(CustomerEvent):
    """ID-5: SMS second factor on; `mobile_masked` shows only the last digits."""

    mobile_masked: Text = Field(min_length=1, max_length=30)


class TwoFactorDisabled(CustomerEvent):
    """ID-5: SMS second factor off (confirmed with an mTAN)."""


class DeviceBound(CustomerEvent):
    """ID-5: an app device proved the SMS factor once and registered its key."""

    device_id: Identifier = Field(min_length=1, max_length=100)
    device_name: Text = Field(default="", max_length=100)


class DeviceRevoked(CustomerEvent):
    device_id: Identifier = Field(min_length=1, max_length=100)


class LoginSucceeded(CustomerEvent):
    """ID-4/ID-10 audit: a session began; `amr` says how it was authenticated."""

    session_id: Identifier = Field(min_length=1, max_length=100)
    amr: tuple[Identifier, ...]


class LoginFailed(CustomerEvent):
    """ID-4 audit: a failed login of an existing account (never for unknown usernames)."""

    reason: Identifier = Field(min_length=1, max_length=50)
