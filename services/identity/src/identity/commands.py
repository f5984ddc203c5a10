"""Commands the identity handlers take (parsed by the entrypoints)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from identity.domain.model import Address


@dataclass(frozen=True)
class Register:
    username: str
    password: str
    first_name: str
    last_name: str
    birth_date: date
    address: Address
    email: str
    mobile: str | None = None
    policy_number: str | None = None
    natural_person: bool = True


@dataclass(frozen=True)
class VerifyEmail:
    customer_id: str
    code: str


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    client: str = ""
    device_id: str | None = None
    challenge_id: str | None = None
    signature: bytes | None = None


@dataclass(frozen=True)
class LoginWithSms:
    login_ticket: str
    code: str
    client: str = ""


@dataclass(frozen=True)
class DeviceChallenge:
    device_id: str


@dataclass(frozen=True)
class Refresh:
    refresh_token: str


@dataclass(frozen=True)
class Logout:
    refresh_token: str


@dataclass(frozen=True)
class Activate:
    customer_id: str
    code: str


@dataclass(frozen=True)
class RequestActivationLetter:
    customer_id: str
    purpose: str = "activate"  # or "rebind_mobile" (ID-5: a new number without the old one)


@dataclass(frozen=True)
class StartTwoFactor:
    customer_id: str
    mobile: str


@dataclass(frozen=True)
class ConfirmMobile:
    customer_id: str
    code: str


@dataclass(frozen=True)
class DisableTwoFactor:
    customer_id: str
    mtan_id: str | None = None


@dataclass(frozen=True)
class ChangeMobile:
    customer_id: str
    mobile: str
    mtan_id: str | None = None
    activation_code: str | None = None


@dataclass(frozen=True)
class RequestMtan:
    customer_id: str
    purpose: str
    reference: str


@dataclass(frozen=True)
class ConfirmMtan:
    customer_id: str
    mtan_id: str
    code: str


@dataclass(frozen=True)
class ConsumeMtan:
    customer_id: str
    mtan_id: str
    reference: str


@dataclass(frozen=True)
class BindDevice:
    customer_id: str
    amr: tuple[str, ...]
    public_key: bytes
    name: str = ""


@dataclass(frozen=True)
class RevokeDevice:
    customer_id: str
    device_id: str


@dataclass(frozen=True)
class RevokeSession:
    customer_id: str
    session_id: str


@dataclass(frozen=True)
class CustomerQuery:
    customer_id: str


@dataclass(frozen=True)
class RemindUsername:
    email: str


@dataclass(frozen=True)
class RequestPasswordReset:
    username: str


@dataclass(frozen=True)
class ResetPassword:
    token: str
    new_password: str
    mtan_id: str | None = None
    mtan_code: str | None = None


@dataclass(frozen=True)
class ChangePassword:
    customer_id: str
    current_password: str
    new_password: str
    mtan_id: str | None = None


@dataclass(frozen=True)
class ChangeEmail:
    customer_id: str
    email: str
    current_password: str
    mtan_id: str | None = None


@dataclass(frozen=True)
class CancelAccount:
    customer_id: str
    current_password: str
    mtan_id: str | None = None


@dataclass(frozen=True)
class RotateSigningKey:
    pass


@dataclass(frozen=True)
class PublishedKeys:
    pass


@dataclass(frozen=True)
class CreateOperator:
    """OPS-1: an operator account (by an administrator at the command line)."""

    username: str
    password: str
    totp_secret: str | None = None  # base32; generated when not given


@dataclass(frozen=True)
class OperatorLogin:
    """OPS-1: password and the current one-time password, always both."""

    username: str
    password: str
    otp: str
    client: str = ""
