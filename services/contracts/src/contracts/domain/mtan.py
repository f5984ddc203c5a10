"""mTAN confirmation of security-relevant changes (ID-6, CT-4).

The identity service owns mTANs: it sends the SMS code (MtanRequested) and checks the
code the customer typed. The contracts handler asks it through a port and receives an
`MtanConfirmation`; the domain only judges that value. A change without a confirmation,
with an unconfirmed one, one for another customer / purpose / change, or a stale one is
refused.

The confirmation is bound to the very change it authorises ("dynamic linking", as in
online banking): its `reference` must equal `bank_details_mtan_reference(policy, IBAN)`,
which the handler passes to identity when requesting the mTAN. A code confirmed for
IBAN A cannot be used to set IBAN B. The reference contains a hash, never the IBAN.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts.domain.errors import CommandRejected, ReasonCode
from contracts.domain.iban import Iban

#: `purpose` of the mTAN (MtanRequested.purpose) for a change of bank details.
BANK_DETAILS_MTAN_PURPOSE = "bank_details_change"

#: A confirmation is used for the change right after the code was checked.
MTAN_CONFIRMATION_MAX_AGE = timedelta(minutes=5)
#: Tolerated clock difference between the identity and the contracts service.
MTAN_CLOCK_SKEW = timedelta(seconds=30)

_NEW_MTAN = "Bitte fordern Sie eine neue mTAN an."


@dataclass(frozen=True)
class MtanChallenge:
    """identity sent an mTAN for a change: the customer confirms it at identity
    (`POST /identity/mtans/{mtan_id}/confirm`), then repeats the change with its id."""

    mtan_id: str
    purpose: str
    expires_at: datetime


class MtanUnavailable(Exception):
    """identity cannot be asked now (down, timeout, misconfigured credentials or grant):
    the change is neither made nor refused for good - the customer may try again (503)."""


class MtanRefused(Exception):
    """identity refuses to send an mTAN for this customer: no confirmed mobile number
    (403 `second_factor_required`), the SMS factor locked (423), too many SMS (429).
    `detail` is identity's German text, fit for the customer."""

    def __init__(
        self, status: int, reason: str, detail: str, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True)
class MtanConfirmation:
    """What identity says about the mTAN the customer typed for one change."""

    customer_id: str
    purpose: str
    reference: str
    confirmed: bool
    confirmed_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.confirmed_at is not None and self.confirmed_at.utcoffset() is None:
            raise ValueError("confirmed_at must be timezone-aware")


def bank_details_mtan_reference(policy_id: str, iban: Iban) -> str:
    """The change an mTAN for new bank details confirms: this policy, this IBAN."""
    digest = hashlib.sha256(f"{policy_id}\n{iban.value}".encode()).hexdigest()[:32]
    return f"{policy_id}:{digest}"


def require_confirmed_mtan(
    confirmation: MtanConfirmation | None,
    *,
    customer_id: str,
    purpose: str,
    reference: str,
    now: datetime,
) -> None:
    """ID-6: raise `CommandRejected` unless `confirmation` authorises exactly this change."""
    if confirmation is None:
        raise CommandRejected(
            ReasonCode.MTAN_REQUIRED,
            "Bitte bestätigen Sie diese Änderung mit der mTAN, die wir Ihnen per SMS senden.",
        )
    if not confirmation.confirmed:
        raise CommandRejected(
            ReasonCode.MTAN_NOT_CONFIRMED,
            f"Die mTAN ist nicht korrekt oder nicht mehr gültig. {_NEW_MTAN}",
        )
    if (
        confirmation.customer_id != customer_id
        or confirmation.purpose != purpose
        or confirmation.reference != reference
    ):
        raise CommandRejected(
            ReasonCode.MTAN_MISMATCH,
            f"Die mTAN wurde für eine andere Änderung angefordert. {_NEW_MTAN}",
        )
    confirmed_at = confirmation.confirmed_at
    if (
        confirmed_at is None
        or confirmed_at > now + MTAN_CLOCK_SKEW
        or now - confirmed_at > MTAN_CONFIRMATION_MAX_AGE
    ):
        raise CommandRejected(
            ReasonCode.MTAN_EXPIRED,
            f"Die Bestätigung mit der mTAN ist abgelaufen. {_NEW_MTAN}",
        )
