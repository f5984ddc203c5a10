"""Pure rules of the identity context: password policy, throttling, code checks.

Nothing here reads the clock or does I/O: the breached-password list and the strength
estimator come in as functions (adapters), `now` comes in as a value.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from contracts_schemas.common import Carrier

from identity.domain.model import Address, Holder, OneTimeCode, Throttle, name_key


class Reason(StrEnum):
    """Stable machine-readable reasons; the API maps them to problems (README)."""

    INVALID_INPUT = "invalid_input"
    WEAK_PASSWORD = "weak_password"  # noqa: S105 - a reason, not a secret
    LOGIN_FAILED = "login_failed"
    THROTTLED = "throttled"
    CODE_INVALID = "code_invalid"
    UNAUTHENTICATED = "unauthenticated"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    MTAN_REQUIRED = "mtan_required"
    FACTOR_LOCKED = "factor_locked"
    SMS_RATE_LIMITED = "sms_rate_limited"
    CANCELLATION_REFUSED = "cancellation_refused"
    SECOND_FACTOR_REQUIRED = "second_factor_required"


class IdentityError(Exception):
    """A refused command; `detail` is German and safe to show to the customer."""

    def __init__(
        self, reason: Reason, detail: str, *, retry_after: int | None = None, **extra: object
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.extra = extra


# ---------------------------------------------------------------- passwords (ID-2)

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128  # NIST: accept at least 64; cap hashing cost
MIN_STRENGTH_SCORE = 3  # zxcvbn 0..4: 3 = "safely unguessable" (offline slow hash)


@dataclass(frozen=True)
class PasswordContext:
    username: str
    first_name: str
    last_name: str
    birth_date: date


def password_problems(
    password: str,
    context: PasswordContext,
    *,
    is_breached: Callable[[str], bool],
    strength: Callable[[str, list[str]], int],
) -> list[str]:
    """ID-2: why `password` is refused (German, for the customer); empty when it is fine.
    Length counts Unicode characters after NFKC; no composition rules (NIST SP 800-63B)."""
    normalised = unicodedata.normalize("NFKC", password)
    if len(normalised) < MIN_PASSWORD_LENGTH:
        return [f"Das Passwort muss mindestens {MIN_PASSWORD_LENGTH} Zeichen lang sein."]
    if len(normalised) > MAX_PASSWORD_LENGTH:
        return [f"Das Passwort darf höchstens {MAX_PASSWORD_LENGTH} Zeichen lang sein."]
    problems = []
    folded = normalised.casefold()
    personal = _personal_fragments(context)
    if any(fragment in folded for fragment in personal):
        problems.append("Das Passwort darf weder Benutzernamen, Namen noch Geburtsdatum enthalten.")
    if is_breached(normalised):
        problems.append(
            "Dieses Passwort ist aus Datenlecks bekannt oder sehr verbreitet."
            " Bitte wählen Sie ein anderes."
        )
    elif strength(normalised, sorted(personal)) < MIN_STRENGTH_SCORE:
        problems.append("Das Passwort ist zu leicht zu erraten. Bitte wählen Sie ein längeres.")
    return problems


def _personal_fragments(context: PasswordContext) -> set[str]:
    born = context.birth_date
    fragments = {
        context.username.casefold(),
        context.first_name.casefold(),
        context.last_name.casefold(),
        born.strftime("%d%m%Y"),
        born.strftime("%d.%m.%Y"),
        born.strftime("%Y%m%d"),
        born.isoformat(),
        born.strftime("%d%m%y"),
    }
    # Names shorter than 3 characters would refuse half of all passwords.
    return {f for f in fragments if len(f) >= 3}


# ---------------------------------------------------------------- throttling (ID-4, ID-5)


@dataclass(frozen=True)
class ThrottlePolicy:
    """Failures below `free` cost nothing; then each further failure blocks for a doubling
    time from `first_delay`, never longer than `cap` (never a permanent lockout)."""

    free: int
    first_delay: timedelta
    cap: timedelta
    lock_after: int  # from this many failures on, the block counts as a lock (e-mail)

    def block_for(self, failures: int) -> timedelta:
        if failures < self.free:
            return timedelta(0)
        doubled: timedelta = self.first_delay * (2 ** min(failures - self.free, 20))
        return self.cap if doubled > self.cap else doubled


ACCOUNT_THROTTLE = ThrottlePolicy(
    free=3, first_delay=timedelta(seconds=2), cap=timedelta(minutes=30), lock_after=6
)
ADDRESS_THROTTLE = ThrottlePolicy(
    free=20, first_delay=timedelta(seconds=2), cap=timedelta(minutes=15), lock_after=10_000
)


def blocked_seconds(throttle: Throttle | None, now: datetime) -> int:
    """Seconds until the key may try again (0: now)."""
    if throttle is None or throttle.blocked_until is None or throttle.blocked_until <= now:
        return 0
    return max(1, int((throttle.blocked_until - now).total_seconds() + 0.999))


def record_failure(throttle: Throttle, policy: ThrottlePolicy, now: datetime) -> bool:
    """Count one failure; True when this failure started a lock (ID-4: tell the customer)."""
    throttle.failures += 1
    throttle.last_failure_at = now
    block = policy.block_for(throttle.failures)
    if block:
        throttle.blocked_until = now + block
    return throttle.failures == policy.lock_after


def clear_failures(throttle: Throttle) -> None:
    throttle.failures = 0
    throttle.blocked_until = None
    throttle.last_failure_at = None


@dataclass(frozen=True)
class SendLimit:
    """At most `count` messages per `window` per key (SMS costs money: ID-5, NT-6)."""

    count: int
    window: timedelta


SMS_PER_ACCOUNT = SendLimit(5, timedelta(minutes=15))
SMS_PER_NUMBER = SendLimit(5, timedelta(minutes=15))


def take_send(throttle: Throttle, limit: SendLimit, now: datetime) -> int:
    """Count a send; returns 0 when allowed, else the seconds until the window ends."""
    if throttle.window_start is None or now >= throttle.window_start + limit.window:
        throttle.window_start = now
        throttle.window_count = 0
    if throttle.window_count >= limit.count:
        return max(1, int((throttle.window_start + limit.window - now).total_seconds()))
    throttle.window_count += 1
    return 0


# ---------------------------------------------------------------- one-time codes

MAX_CODE_ATTEMPTS = 5  # ID-5: tries per SMS code
MAX_SMS_FAILURES = 100  # ID-5: consecutive failures per account before the factor locks
SMS_CODE_VALIDITY = timedelta(minutes=5)  # ID-5/ID-6: at most 10 minutes
MTAN_VALIDITY = timedelta(minutes=5)  # ID-6
MTAN_CONFIRMATION_VALIDITY = timedelta(minutes=5)  # ID-6: confirmed -> used within
ACTIVATION_VALIDITY = timedelta(days=90)  # ID-3
RESET_VALIDITY = timedelta(minutes=30)  # ID-7
EMAIL_CODE_VALIDITY = timedelta(hours=24)
DEVICE_CHALLENGE_VALIDITY = timedelta(minutes=2)


class CodeCheck(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    SPENT = "spent"  # used, expired or out of tries: a new code is needed


def check_code(code: OneTimeCode, matches: bool, now: datetime) -> CodeCheck:
    """One try at `code`; marks it used when right, counts the try when wrong."""
    if not code.usable(now) or code.attempts >= MAX_CODE_ATTEMPTS:
        return CodeCheck.SPENT
    if not matches:
        code.attempts += 1
        return CodeCheck.WRONG
    code.used_at = now
    return CodeCheck.OK


# ---------------------------------------------------------------- cancellation (ID-9)

BLOCKING_CARRIERS = frozenset({Carrier.ALLIANZ_GLOBAL_INVESTORS, Carrier.ALLVEST, Carrier.FOURMORE})
CARRIER_NAMES = {
    Carrier.ALLIANZ_GLOBAL_INVESTORS: "Allianz Global Investors",
    Carrier.ALLVEST: "Allvest",
    Carrier.FOURMORE: "Fourmore",
}


def mask_mobile(mobile: str) -> str:
    return "*" * max(0, len(mobile) - 3) + mobile[-3:]


def same_person(holder: Holder, first_name: str, last_name: str, birth_date: date) -> bool:
    """ID-3: the registrant is the policyholder on file: given and family name equal
    after Unicode normalisation and case folding (`name_key`), the birth date exactly."""
    return (
        name_key(holder.given_name) == name_key(first_name)
        and name_key(holder.family_name) == name_key(last_name)
        and holder.birth_date == birth_date
    )


def same_address(a: Address, b: Address) -> bool:
    """CT-4: two postal addresses are one when every line is equal after Unicode
    normalisation, case folding and runs of white space (`name_key`): a move reported
    again with other capitals or spacing is no change."""

    def lines(address: Address) -> tuple[str, ...]:
        parts = (address.recipient, address.street, address.postal_code, address.city)
        return (*map(name_key, parts), address.country.upper())

    return lines(a) == lines(b)
