"""The identity context's state: accounts, sessions, one-time codes, devices, throttles.

Pure data, no I/O and no clock: handlers pass `now` in. Accounts are state-stored (not
event-sourced) because their personal data must be encrypted at rest; every change that
other services need leaves as an event through the outbox (README, "Storage").
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from contracts_schemas.common import Carrier


class AccountStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


class CodeKind(StrEnum):
    """What a one-time code or token proves; each kind is only ever checked as itself."""

    EMAIL_VERIFICATION = "email_verification"
    ACTIVATION = "activation"
    LOGIN_SMS = "login_sms"
    MTAN = "mtan"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a kind name, not a secret
    DEVICE_CHALLENGE = "device_challenge"


@dataclass(frozen=True, slots=True)
class Address:
    recipient: str
    street: str
    postal_code: str
    city: str
    country: str = "DE"


@dataclass
class Account:
    customer_id: str
    username: str  # as chosen (NFKC-normalised)
    username_key: str  # NFKC + casefold: the unique lookup key (ID-1)
    password_hash: str
    first_name: str
    last_name: str
    birth_date: date
    address: Address
    email: str
    registered_at: datetime
    mobile: str | None = None
    email_verified: bool = False
    customer: bool = False  # bound to a policyholder id by a matching policy number (ID-3)
    activated: bool = False  # ID-3: the activation code was entered
    two_factor: bool = False  # ID-5: SMS second factor on (mobile verified)
    sms_factor_locked: bool = False  # ID-5: 100 consecutive SMS code failures
    sms_failures: int = 0
    status: AccountStatus = AccountStatus.ACTIVE
    last_login_at: datetime | None = None
    pending_email: str | None = None  # ID-8: new address awaiting its code
    pending_mobile: str | None = None  # ID-5/ID-8: new number awaiting its code
    version: int = 0  # events emitted for this account (aggregate_version), and the lock

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass
class OneTimeCode:
    """A code or token, stored only as a keyed hash. Single use; limited tries."""

    code_id: str
    kind: CodeKind
    customer_id: str
    code_hash: str
    created_at: datetime
    expires_at: datetime
    attempts: int = 0
    used_at: datetime | None = None
    purpose: str = ""  # mTAN: the named operation
    reference: str = ""  # mTAN: hash of the operation's parameters; device challenge: device id
    target: str = ""  # where it was sent (number/e-mail) when that matters for the check
    confirmed_at: datetime | None = None  # mTAN: confirmed by the customer, not yet consumed
    consumed_at: datetime | None = None  # mTAN: used by the operation it confirmed

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at


@dataclass
class Session:
    """A login: one refresh-token family (ID-4)."""

    session_id: str
    customer_id: str
    created_at: datetime
    last_used_at: datetime
    auth_time: datetime
    amr: tuple[str, ...]
    device_id: str | None = None
    client: str = ""
    revoked_at: datetime | None = None
    revoked_reason: str = ""


@dataclass
class RefreshToken:
    token_hash: str
    session_id: str
    issued_at: datetime
    spent_at: datetime | None = None


@dataclass
class Device:
    """ID-5: an app installation bound by an Ed25519 public key."""

    device_id: str
    customer_id: str
    public_key: bytes
    name: str
    bound_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass
class Throttle:
    """Failures or sends counted under one key (an account, an address, a number)."""

    key: str
    failures: int = 0
    last_failure_at: datetime | None = None
    blocked_until: datetime | None = None
    window_start: datetime | None = None
    window_count: int = 0


@dataclass(frozen=True, slots=True)
class Holder:
    """ID-3: a policyholder as policy administration has them on file (from contracts'
    events; personal data, encrypted at rest, never logged)."""

    customer_id: str
    given_name: str
    family_name: str
    birth_date: date
    address: Address


@dataclass
class Policy:
    """Identity's own view of a contract, from contracts' events (ID-3, ID-9)."""

    policy_id: str
    policy_number: str
    carrier: Carrier
    policyholder_ids: tuple[str, ...]
    cancelled: bool = False
    # ID-3: the holders' details when contracts' events carried them (empty for older
    # events) and the business time of the event that last set them.
    holders: tuple[Holder, ...] = ()
    holders_at: datetime | None = None

    def holder(self, customer_id: str) -> Holder | None:
        return next((h for h in self.holders if h.customer_id == customer_id), None)


@dataclass
class SigningKey:
    kid: str
    private_jwk: dict[str, str]
    public_jwk: dict[str, str]
    created_at: datetime
    retired_at: datetime | None = None

    def published(self, now: datetime, keep_for: timedelta) -> bool:
        """Old keys stay in the JWKS until every token they signed has expired (ID-4)."""
        return self.retired_at is None or now < self.retired_at + keep_for


@dataclass(frozen=True)
class Outcome:
    """The answer of a handler that may need another step from the customer."""

    status: str
    data: dict[str, object] = field(default_factory=dict)


def normalise_username(username: str) -> str:
    """ID-1: Unicode NFKC, surrounding spaces removed."""
    return unicodedata.normalize("NFKC", username).strip()


def username_key(username: str) -> str:
    """ID-1: unique case-insensitively: NFKC, casefolded, NFKC again (UAX #31 / RFC 8265)."""
    return unicodedata.normalize("NFKC", normalise_username(username).casefold())


def name_key(name: str) -> str:
    """ID-3: names compare Unicode-normalised (NFKC), case-insensitively (casefold) and
    with runs of white space as one space: "ERIKA  Müller" matches "erika müller"."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())


def normalise_email(email: str) -> str:
    return unicodedata.normalize("NFKC", email).strip().lower()
