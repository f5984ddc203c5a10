"""The identity service's HTTP API: customer routes under /identity, the JWKS at
/.well-known/jwks.json, and internal routes for other services' mTAN checks (ID-6).

Each route parses, makes ONE handler call through `service.transactions.execute`, and
maps the result: an `Outcome` is 200 (202 for registration) with `status` and its data;
a `Refused` (committed) or an `IdentityError` (rolled back) is an RFC 9457 problem."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, Protocol, TypeVar

import jwt
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from servicekit.asyncapi import document, mount
from servicekit.auth import TokenVerifier, Unauthenticated
from servicekit.clock import SystemClock
from servicekit.http import Problem, client_address, problems, requires
from servicekit.permissions import Operation
from servicekit.runtime import Runtime
from servicekit.unit_of_work import Transactions

from identity import commands as c
from identity.adapters.postgres import PostgresIdentityUnitOfWork
from identity.config import IdentitySettings
from identity.domain.model import Address, Outcome
from identity.domain.rules import IdentityError, Reason
from identity.entrypoints.stream import STREAM
from identity.handlers import Identity, Refused

C = TypeVar("C")

_STATUS = {
    Reason.INVALID_INPUT: 422, Reason.WEAK_PASSWORD: 422, Reason.LOGIN_FAILED: 401,
    Reason.THROTTLED: 429, Reason.CODE_INVALID: 400, Reason.UNAUTHENTICATED: 401,
    Reason.NOT_FOUND: 404, Reason.CONFLICT: 409, Reason.MTAN_REQUIRED: 403,
    Reason.FACTOR_LOCKED: 423, Reason.SMS_RATE_LIMITED: 429,
    Reason.CANCELLATION_REFUSED: 409, Reason.SECOND_FACTOR_REQUIRED: 403,
}  # fmt: skip


class IdentityService(Protocol):
    runtime: Runtime
    identity: Identity
    transactions: Transactions[PostgresIdentityUnitOfWork]
    settings: IdentitySettings


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=2000)


class AddressIn(Body):
    recipient: str = Field(min_length=1, max_length=200)
    street: str = Field(min_length=1, max_length=200)
    postal_code: str = Field(min_length=1, max_length=20)
    city: str = Field(min_length=1, max_length=100)
    country: str = Field(default="DE", pattern=r"^[A-Z]{2}$")


class RegistrationIn(Body):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    birth_date: date
    address: AddressIn
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    mobile: str | None = Field(default=None, max_length=30)
    policy_number: str | None = Field(default=None, max_length=100)


class OperatorLoginIn(Body):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)
    otp: str = Field(min_length=6, max_length=10, description="the authenticator app's code")


class LoginIn(Body):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)
    device_id: str | None = Field(default=None, max_length=100)
    challenge_id: str | None = Field(default=None, max_length=100)
    signature: str | None = Field(default=None, max_length=200, description="base64 Ed25519")


class TicketCodeIn(Body):
    login_ticket: str = Field(min_length=1, max_length=100)
    code: str = Field(min_length=1, max_length=40)


class CodeIn(Body):
    code: str = Field(min_length=1, max_length=40)


class DeviceIdIn(Body):
    device_id: str = Field(min_length=1, max_length=100)


class RefreshIn(Body):
    refresh_token: str = Field(min_length=1, max_length=200)


class LetterIn(Body):
    purpose: str = Field(default="activate", pattern=r"^(activate|rebind_mobile)$")


class MobileIn(Body):
    mobile: str = Field(min_length=3, max_length=30)


class ChangeMobileIn(MobileIn):
    mtan_id: str | None = Field(default=None, max_length=100)
    activation_code: str | None = Field(default=None, max_length=40)


class MtanIdIn(Body):
    mtan_id: str | None = Field(default=None, max_length=100)


class MtanRequestIn(Body):
    purpose: str = Field(min_length=1, max_length=50, pattern=r"^[a-z_]+$")
    reference: str = Field(min_length=1, max_length=200)


class InternalMtanIn(MtanRequestIn):
    customer_id: str = Field(min_length=1, max_length=100)


class ConsumeIn(Body):
    customer_id: str = Field(min_length=1, max_length=100)
    reference: str = Field(min_length=1, max_length=200)


class DeviceIn(Body):
    public_key: str = Field(min_length=1, max_length=100, description="base64 raw Ed25519")
    name: str = Field(default="", max_length=100)


class EmailIn(Body):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class UsernameIn(Body):
    username: str = Field(min_length=1, max_length=100)


class ResetIn(Body):
    token: str = Field(min_length=1, max_length=300)
    new_password: str = Field(min_length=1, max_length=1000)
    mtan_id: str | None = Field(default=None, max_length=100)
    mtan_code: str | None = Field(default=None, max_length=40)


class PasswordChangeIn(Body):
    current_password: str = Field(min_length=1, max_length=1000)
    new_password: str = Field(min_length=1, max_length=1000)
    mtan_id: str | None = Field(default=None, max_length=100)


class EmailChangeIn(EmailIn):
    current_password: str = Field(min_length=1, max_length=1000)
    mtan_id: str | None = Field(default=None, max_length=100)


class CancellationIn(Body):
    current_password: str = Field(min_length=1, max_length=1000)
    mtan_id: str | None = Field(default=None, max_length=100)


class Caller(BaseModel):
    customer_id: str
    amr: tuple[str, ...]


def _problem(error: IdentityError) -> Problem:
    extensions: dict[str, Any] = {"reason": error.reason.value}
    extensions.update({k: v for k, v in error.extra.items() if k != "problems"})
    if "problems" in error.extra:
        extensions["problems"] = error.extra["problems"]
    if error.retry_after is not None:
        extensions["retry_after"] = error.retry_after
    return Problem(
        _STATUS[error.reason], error.reason.value.replace("_", " ").capitalize(), error.detail,
        type_=f"urn:portal:problem:identity:{error.reason.value}", extensions=extensions,
    )  # fmt: skip


def _json(data: dict[str, object]) -> dict[str, object]:
    """Dates and datetimes as ISO text, also inside lists (sessions, devices)."""
    encoded: dict[str, object] = jsonable_encoder(data)
    return encoded


async def caller(request: Request) -> Caller:
    """The customer of a bearer token that identity signed (ID-4), with its `amr`."""
    verifier: TokenVerifier = request.app.state.identity_verifier
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "Unauthorized", "Bitte melden Sie sich an.")
    try:
        principal = await verifier.verify(token)
    except Unauthenticated:
        raise Problem(401, "Unauthorized", "Bitte melden Sie sich erneut an.") from None
    return Caller(customer_id=principal.customer_id, amr=principal.amr)


caller.problem_statuses = (401,)  # type: ignore[attr-defined]
Customer = Annotated[Caller, Depends(caller)]
# ID-6: only systems granted the mTAN operation (contracts) ask for and consume mTANs.
MtanSystem = Annotated[str, Depends(requires(Operation.MTAN))]


def create_app(service: IdentityService) -> FastAPI:
    app = service.runtime.http_app(service, lambda app: None)
    verifier = TokenVerifier(
        _OwnKeys(service), SystemClock(), service.runtime.settings.token_audience,
        service.runtime.settings.token_issuer,
    )  # fmt: skip

    app.state.identity_verifier = verifier

    async def run(
        handler: Callable[[C, PostgresIdentityUnitOfWork], Awaitable[Outcome | Refused]],
        command: C,
        status: int = 200,
    ) -> JSONResponse:
        try:
            result = await service.transactions.execute(handler, command)
        except IdentityError as error:
            raise _problem(error) from None
        if isinstance(result, Refused):
            problem = _problem(result.error)
            if result.error.retry_after is not None:
                raise Problem(problem.status, problem.title, problem.detail, type_=problem.type,
                              extensions=problem.extensions)  # fmt: skip
            raise problem
        return JSONResponse({"status": result.status, **_json(dict(result.data))}, status)

    h = service.identity
    router = APIRouter(tags=["identity"])

    trusted_proxies = service.settings.trusted_proxies

    def client(request: Request) -> str:
        """ID-4: the address failures are counted for: the TCP peer, or - behind a trusted
        proxy (the gateway, PORTAL_TRUSTED_PROXIES) - the client it names."""
        peer = request.client.host if request.client else ""
        forwarded = request.headers.get("x-forwarded-for")
        return client_address(peer, forwarded, trusted_proxies)[0]

    @router.post("/identity/registrations", status_code=202, responses=problems(422))
    async def register(body: RegistrationIn) -> JSONResponse:
        """ID-1/ID-3: the same answer whether or not the username is free or the policy
        number matched; the e-mail tells what happens next."""
        a = body.address
        return await run(h.register, c.Register(
            body.username, body.password, body.first_name, body.last_name, body.birth_date,
            Address(a.recipient, a.street, a.postal_code, a.city, a.country), body.email,
            body.mobile, body.policy_number,
        ), status=202)  # fmt: skip

    @router.post("/identity/email/verify", responses=problems(400))
    async def verify_email(body: CodeIn, who: Customer) -> JSONResponse:
        return await run(h.verify_email, c.VerifyEmail(who.customer_id, body.code))

    @router.post("/identity/login", responses=problems(401, 423, 429))
    async def login(body: LoginIn, request: Request) -> JSONResponse:
        """ID-4: tokens, or `sms_required` with a login ticket (ID-5)."""
        return await run(h.login, c.Login(
            body.username, body.password, client(request), body.device_id, body.challenge_id,
            _b64(body.signature) if body.signature else None,
        ))  # fmt: skip

    @router.post("/identity/operators/login", tags=["operators"], responses=problems(401, 429))
    async def operator_login(body: OperatorLoginIn, request: Request) -> JSONResponse:
        """OPS-1: an operator's token for the console: password and one-time password
        together; audience `portal-operators`, `role: operator` (customer routes refuse it)."""
        return await run(h.operator_login, c.OperatorLogin(
            body.username, body.password, body.otp, client(request)))  # fmt: skip

    @router.post("/identity/login/sms", responses=problems(400, 423))
    async def login_sms(body: TicketCodeIn, request: Request) -> JSONResponse:
        return await run(
            h.login_with_sms, c.LoginWithSms(body.login_ticket, body.code, client(request))
        )

    @router.post("/identity/login/device-challenge")
    async def device_challenge(body: DeviceIdIn) -> JSONResponse:
        return await run(h.device_challenge, c.DeviceChallenge(body.device_id))

    @router.post("/identity/token/refresh", responses=problems(401))
    async def refresh(body: RefreshIn) -> JSONResponse:
        return await run(h.refresh, c.Refresh(body.refresh_token))

    @router.post("/identity/logout")
    async def logout(body: RefreshIn) -> JSONResponse:
        return await run(h.logout, c.Logout(body.refresh_token))

    @router.get("/identity/me")
    async def me(who: Customer) -> JSONResponse:
        return await run(h.profile, c.CustomerQuery(who.customer_id))

    @router.post("/identity/activation", responses=problems(400, 429))
    async def activate(body: CodeIn, who: Customer) -> JSONResponse:
        return await run(h.activate, c.Activate(who.customer_id, body.code))

    @router.post("/identity/activation/letters", responses=problems(409))
    async def letter(body: LetterIn, who: Customer) -> JSONResponse:
        return await run(
            h.request_activation_letter, c.RequestActivationLetter(who.customer_id, body.purpose)
        )

    @router.post("/identity/two-factor", responses=problems(409, 429))
    async def start_two_factor(body: MobileIn, who: Customer) -> JSONResponse:
        return await run(h.start_two_factor, c.StartTwoFactor(who.customer_id, body.mobile))

    @router.post("/identity/two-factor/confirm", responses=problems(400, 423))
    async def confirm_mobile(body: CodeIn, who: Customer) -> JSONResponse:
        return await run(h.confirm_mobile, c.ConfirmMobile(who.customer_id, body.code))

    @router.post("/identity/two-factor/disable", responses=problems(403, 429))
    async def disable(body: MtanIdIn, who: Customer) -> JSONResponse:
        return await run(h.disable_two_factor, c.DisableTwoFactor(who.customer_id, body.mtan_id))

    @router.post("/identity/mobile", responses=problems(400, 403, 429))
    async def change_mobile(body: ChangeMobileIn, who: Customer) -> JSONResponse:
        return await run(h.change_mobile, c.ChangeMobile(
            who.customer_id, body.mobile, body.mtan_id, body.activation_code))  # fmt: skip

    @router.post("/identity/mtans", responses=problems(403, 423, 429))
    async def request_mtan(body: MtanRequestIn, who: Customer) -> JSONResponse:
        """ID-6: an mTAN for a named operation bound to its parameters' hash."""
        return await run(
            h.request_mtan, c.RequestMtan(who.customer_id, body.purpose, body.reference)
        )

    @router.post("/identity/mtans/{mtan_id}/confirm", responses=problems(400, 404, 423))
    async def confirm_mtan(mtan_id: str, body: CodeIn, who: Customer) -> JSONResponse:
        return await run(h.confirm_mtan, c.ConfirmMtan(who.customer_id, mtan_id, body.code))

    @router.get("/identity/devices")
    async def devices(who: Customer) -> JSONResponse:
        return await run(h.devices, c.CustomerQuery(who.customer_id))

    @router.post("/identity/devices", responses=problems(403))
    async def bind_device(body: DeviceIn, who: Customer) -> JSONResponse:
        return await run(h.bind_device, c.BindDevice(
            who.customer_id, who.amr, _b64(body.public_key), body.name))  # fmt: skip

    @router.delete("/identity/devices/{device_id}", responses=problems(404))
    async def revoke_device(device_id: str, who: Customer) -> JSONResponse:
        return await run(h.revoke_device, c.RevokeDevice(who.customer_id, device_id))

    @router.get("/identity/sessions")
    async def sessions(who: Customer) -> JSONResponse:
        return await run(h.sessions, c.CustomerQuery(who.customer_id))

    @router.delete("/identity/sessions/{session_id}", responses=problems(404))
    async def revoke_session(session_id: str, who: Customer) -> JSONResponse:
        return await run(h.revoke_session, c.RevokeSession(who.customer_id, session_id))

    @router.post("/identity/recovery/username", status_code=202)
    async def remind(body: EmailIn) -> JSONResponse:
        return await run(h.remind_username, c.RemindUsername(body.email), status=202)

    @router.post("/identity/recovery/password", status_code=202)
    async def reset_request(body: UsernameIn) -> JSONResponse:
        return await run(h.request_password_reset, c.RequestPasswordReset(body.username), 202)

    @router.post("/identity/recovery/password/reset", responses=problems(400, 423, 429))
    async def reset(body: ResetIn) -> JSONResponse:
        return await run(h.reset_password, c.ResetPassword(
            body.token, body.new_password, body.mtan_id, body.mtan_code))  # fmt: skip

    @router.post("/identity/password", responses=problems(401, 403, 429))
    async def change_password(body: PasswordChangeIn, who: Customer) -> JSONResponse:
        return await run(h.change_password, c.ChangePassword(
            who.customer_id, body.current_password, body.new_password, body.mtan_id))  # fmt: skip

    @router.post("/identity/email", responses=problems(401, 403, 429))
    async def change_email(body: EmailChangeIn, who: Customer) -> JSONResponse:
        return await run(h.change_email, c.ChangeEmail(
            who.customer_id, body.email, body.current_password, body.mtan_id))  # fmt: skip

    @router.post("/identity/cancellation", responses=problems(401, 403, 409, 429))
    async def cancel(body: CancellationIn, who: Customer) -> JSONResponse:
        """ID-9: refused with the reason while an investment contract is held."""
        return await run(h.cancel_account, c.CancelAccount(
            who.customer_id, body.current_password, body.mtan_id))  # fmt: skip

    @router.get("/.well-known/jwks.json", tags=["keys"])
    async def jwks() -> JSONResponse:
        """ID-4: the public keys; retired ones stay until their tokens expired."""
        result = await service.transactions.execute(h.published_keys, c.PublishedKeys())
        return JSONResponse(dict(result.data), headers={"Cache-Control": "max-age=60"})

    @router.post("/internal/identity/mtans", tags=["internal"], responses=problems(403, 423, 429))
    async def internal_request(body: InternalMtanIn, system: MtanSystem) -> JSONResponse:
        """ID-6 for other services: send an mTAN for the customer's operation."""
        return await run(
            h.request_mtan, c.RequestMtan(body.customer_id, body.purpose, body.reference)
        )

    @router.post(
        "/internal/identity/mtans/{mtan_id}/consume", tags=["internal"], responses=problems(404)
    )
    async def internal_consume(mtan_id: str, body: ConsumeIn, system: MtanSystem) -> JSONResponse:
        """ID-6: what the mTAN confirms; a confirmed one for exactly this reference is used
        up by this call (single use)."""
        return await run(h.consume_mtan, c.ConsumeMtan(body.customer_id, mtan_id, body.reference))

    app.include_router(router)
    mount(app, document(STREAM))  # /asyncapi and /asyncapi.json
    return app


class _OwnKeys:
    """Identity verifies its own tokens against its own published keys."""

    def __init__(self, service: IdentityService) -> None:
        self._service = service

    async def key(self, kid: str) -> jwt.PyJWK:
        result = await self._service.transactions.execute(
            self._service.identity.published_keys, c.PublishedKeys()
        )
        keys: list[dict[str, str]] = list(result.data["keys"])  # type: ignore[call-overload]
        for key in keys:
            if key["kid"] == kid:
                return jwt.PyJWK(key)
        raise Unauthenticated("unknown signing key")


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        raise Problem(422, "Invalid request", "Ungültige Base64-Daten.") from None
