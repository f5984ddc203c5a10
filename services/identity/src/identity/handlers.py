"""Use cases of the identity service (ID-1..ID-10).

Each handler takes a command and the unit of work (already inside its transaction) and
returns an `Outcome`, or a `Refused` when the refusal itself must be committed (a failed
login counts, a wrong code uses a try): raising would roll those back. Raising
`IdentityError` refuses without any effect. No SQL, no connections, no wall clock: the
clocks come in (`clock`: business time for letters; `wall`: security time for tokens,
sessions, codes and throttles, which verifiers check against the wall clock too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, assert_never

from contracts_schemas import identity as ev
from contracts_schemas.base import Contract, Event
from contracts_schemas.common import PolicyholderDetails, PostalAddress
from contracts_schemas.contracts import (
    MoveReported,
    PolicyCancelled,
    PolicyholdersChanged,
    PolicyIssued,
)
from servicekit.clock import Clock
from servicekit.logging import get_logger

from identity import commands as c
from identity.domain import rules
from identity.domain.model import (
    Account,
    AccountStatus,
    Address,
    CodeKind,
    Device,
    Holder,
    OneTimeCode,
    Outcome,
    Policy,
    RefreshToken,
    Session,
    SigningKey,
    Throttle,
    normalise_email,
    normalise_username,
    username_key,
)
from identity.domain.operators import OPERATOR_ROLE, Operator, matching_step
from identity.domain.rules import CodeCheck, IdentityError, Reason
from identity.ports import DeviceSignatures, PasswordChecks, PasswordHasher, Secrets, TokenSigner
from identity.unit_of_work import IdentityUnitOfWork, OperatorTaken, UsernameTaken

log = get_logger(__name__)

ACR_PASSWORD = "urn:portal:acr:password"  # noqa: S105 - an ACR value, not a secret
ACR_TWO_FACTOR = "urn:portal:acr:2fa"
AMR_PASSWORD = ("pwd",)
AMR_SMS = ("pwd", "sms", "mfa")
AMR_DEVICE = ("pwd", "hwk", "mfa")


@dataclass(frozen=True)
class Refused:
    """A refusal whose effects (a counted failure, a used try) must still commit."""

    error: IdentityError


Result = Outcome | Refused


@dataclass(frozen=True)
class IdentityConfig:
    issuer: str = "portal-identity"
    audience: str = "portal"
    access_token_ttl: timedelta = timedelta(minutes=5)  # ID-4: at most 15 minutes
    session_idle: timedelta = timedelta(minutes=15)  # ID-4
    session_max: timedelta = timedelta(hours=12)
    key_rotation: timedelta = timedelta(days=30)
    token_leeway: timedelta = timedelta(seconds=30)  # verifiers' leeway: keys stay that long too
    reset_url: str = "https://portal.example/passwort-neu?token="
    recent_auth: timedelta = timedelta(minutes=10)  # binding a device needs a fresh SMS login
    # OPS-1: operator tokens are for the console only: their own audience, never "portal".
    operator_audience: str = "portal-operators"
    operator_token_ttl: timedelta = timedelta(minutes=15)


_LOGIN_FAILED = "Benutzername oder Passwort ist nicht korrekt."
_CODE_WRONG = "Der Code ist nicht korrekt."
_CODE_SPENT = "Der Code ist nicht mehr gültig. Bitte fordern Sie einen neuen an."


@dataclass
class Identity:
    """The identity service's handlers with what they depend on (wired by bootstrap)."""

    clock: Clock
    wall: Clock
    hasher: PasswordHasher
    checks: PasswordChecks
    secrets: Secrets
    signer: TokenSigner
    device_signatures: DeviceSignatures
    config: IdentityConfig = field(default_factory=IdentityConfig)

    # ------------------------------------------------------------ ID-1 registration

    async def register(self, command: c.Register, uow: IdentityUnitOfWork) -> Outcome:
        """ID-1/ID-2/ID-3: the same answer whether or not the username was free (the
        registrant learns it by e-mail) and whether or not the policy number matched."""
        now = self.wall.now()
        username = normalise_username(command.username)
        if not 3 <= len(username) <= 64 or any(ch.isspace() for ch in username):
            raise IdentityError(
                Reason.INVALID_INPUT,
                "Der Benutzername muss 3 bis 64 Zeichen lang sein und darf keine Leerzeichen"
                " enthalten.",
            )
        self._check_password(
            command.password, username, command.first_name, command.last_name, command
        )
        password_hash = self.hasher.hash(command.password)
        key = username_key(username)
        email = normalise_email(command.email)
        accepted = Outcome("registration_received")
        if await uow.accounts.by_username(key) is not None:
            await self._username_unavailable(uow, email, username, now)
            return accepted
        customer_id, letter_to = await self._customer_id_for(uow, command)
        customer = letter_to is not None
        account = Account(
            customer_id=customer_id, username=username, username_key=key,
            password_hash=password_hash, first_name=command.first_name.strip(),
            last_name=command.last_name.strip(), birth_date=command.birth_date,
            address=command.address, email=email, registered_at=now,
            pending_mobile=command.mobile, customer=customer,
        )  # fmt: skip
        try:
            await uow.accounts.add(account)
        except UsernameTaken:
            await self._username_unavailable(uow, email, username, now)
            return accepted
        a = command.address
        await self._emit(uow, account, ev.CustomerRegistered, now,
            first_name=account.first_name, last_name=account.last_name,
            birth_date=account.birth_date, natural_person=command.natural_person,
            address=PostalAddress(recipient=a.recipient, street=a.street,
                                  postal_code=a.postal_code, city=a.city, country=a.country),
            email=email, mobile=None,
        )  # fmt: skip
        await self._send_email_code(uow, account, email, now)
        if letter_to is not None:
            await self._issue_activation_code(uow, account, "activate", letter_to)
        return accepted

    async def _customer_id_for(
        self, uow: IdentityUnitOfWork, command: c.Register
    ) -> tuple[str, Address | None]:
        """ID-3: (the account's customer id, where its activation letter goes - None when
        the registrant is not matched to a policyholder).

        A policy in force whose SOLE policyholder has no account yet matches when the
        registrant has that holder's name and birth date as contracts' events carry them;
        the letter then goes to the holder's postal address on the policy, never to the
        address typed at registration. Policies known only from older events without
        the holders' details match on the policy number alone, as before (README, "ID-3").
        Any other case - unknown number, joint holders, another name or birth date - is
        answered exactly like a registration without a policy number (no letter)."""
        if command.policy_number:
            policy = await uow.policies.by_number(command.policy_number.strip())
            if policy is not None and not policy.cancelled and len(policy.policyholder_ids) == 1:
                holder_id = policy.policyholder_ids[0]
                if await uow.accounts.get(holder_id) is None:
                    if not policy.holders:
                        return holder_id, command.address  # older events: the fallback
                    holder = policy.holder(holder_id)
                    if holder is not None and rules.same_person(
                        holder, command.first_name, command.last_name, command.birth_date
                    ):
                        return holder_id, holder.address
        return f"cust-{self.secrets.new_id()}", None

    async def _letter_address(self, uow: IdentityUnitOfWork, account: Account) -> Address:
        """ID-3/ID-5: letters to a policyholder go to the newest address on their policies
        (a policy in force before a cancelled one); otherwise - non-customers, policies
        from older events without details - to the address given at registration."""
        if account.customer:
            known = [
                ((not p.cancelled, p.holders_at), holder.address)
                for p in await uow.policies.of_holder(account.customer_id)
                if p.holders_at is not None
                and (holder := p.holder(account.customer_id)) is not None
            ]
            if known:
                return max(known, key=lambda entry: entry[0])[1]
        return account.address

    async def _username_unavailable(
        self, uow: IdentityUnitOfWork, email: str, username: str, now: datetime
    ) -> None:
        aggregate = "registration-" + hashlib.sha256(email.encode()).hexdigest()[:32]
        await uow.events.enqueue([ev.RegistrationNotCompleted(
            event_id=uuid.uuid4(), aggregate_id=aggregate, aggregate_version=1,
            occurred_at=now, email=email, username=username, reason="username_taken",
        )])  # fmt: skip

    def _check_password(
        self, password: str, username: str, first: str, last: str, source: Any
    ) -> None:
        context = rules.PasswordContext(username, first, last, source.birth_date)
        problems = rules.password_problems(
            password, context, is_breached=self.checks.is_breached, strength=self.checks.strength
        )
        if problems:
            raise IdentityError(Reason.WEAK_PASSWORD, " ".join(problems), problems=problems)

    async def verify_email(self, command: c.VerifyEmail, uow: IdentityUnitOfWork) -> Result:
        """ID-1/ID-8: the code sent to the (new) address proves it; a changed address is
        announced with the previous one, so the notifier tells the old address."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        codes = [
            code for code in await uow.codes.of_customer(account.customer_id,
                                                         CodeKind.EMAIL_VERIFICATION)
            if code.usable(now) and code.target == (account.pending_email or account.email)
        ]  # fmt: skip
        if not codes:
            return Refused(IdentityError(Reason.CODE_INVALID, _CODE_SPENT))
        code = max(codes, key=lambda k: k.created_at)
        outcome = rules.check_code(code, self._matches(code, _normalise_code(command.code)), now)
        await uow.codes.save(code)
        if outcome is not CodeCheck.OK:
            return Refused(IdentityError(Reason.CODE_INVALID, _CODE_WRONG))
        if code.target == account.pending_email and account.pending_email != account.email:
            previous = account.email
            account.email = code.target
            account.pending_email = None
            await self._emit(
                uow,
                account,
                ev.ContactDetailsChanged,
                now,
                email=account.email,
                previous_email=previous,
            )
        account.email_verified = True
        await self._emit(uow, account, ev.EmailVerified, now, email=account.email)
        await uow.accounts.save(account)
        return Outcome("email_verified")

    # ------------------------------------------------------------ ID-4 login

    async def login(self, command: c.Login, uow: IdentityUnitOfWork) -> Result:
        """ID-4/ID-5: password, then SMS code or device proof when 2FA is on. Unknown
        usernames and wrong passwords get the same answer after the same work."""
        now = self.wall.now()
        key = username_key(command.username)
        user_throttle = await uow.throttles.get(f"user:{key}")
        address_throttle = await uow.throttles.get(f"addr:{command.client}")
        wait = max(rules.blocked_seconds(user_throttle, now),
                   rules.blocked_seconds(address_throttle, now))  # fmt: skip
        if wait:
            self.hasher.verify_dummy(command.password)
            return Refused(_throttled(wait))
        account = await uow.accounts.by_username(key)
        if account is None or account.status is AccountStatus.CANCELLED:
            self.hasher.verify_dummy(command.password)
            await self._count_failure(uow, None, user_throttle, address_throttle, now)
            return Refused(IdentityError(Reason.LOGIN_FAILED, _LOGIN_FAILED))
        if not self.hasher.verify(account.password_hash, command.password):
            await self._count_failure(uow, account, user_throttle, address_throttle, now)
            return Refused(IdentityError(Reason.LOGIN_FAILED, _LOGIN_FAILED))
        rules.clear_failures(user_throttle)
        await uow.throttles.save(user_throttle)
        if self.hasher.needs_rehash(account.password_hash):
            account.password_hash = self.hasher.hash(command.password)  # ID-2: parameters rose
        if not account.two_factor:
            return await self._start_session(uow, account, AMR_PASSWORD, command.client, None)
        device = await self._proven_device(uow, account, command, now)
        if device is not None:
            return await self._start_session(uow, account, AMR_DEVICE, command.client, device)
        if account.sms_factor_locked:
            await uow.accounts.save(account)
            return Refused(_factor_locked())
        assert account.mobile is not None
        code, error = await self._send_sms_code(
            uow, account, account.mobile, CodeKind.LOGIN_SMS, "login", "", now
        )
        await uow.accounts.save(account)
        if error is not None:
            return Refused(error)
        assert code is not None
        return Outcome("sms_required", {
            "login_ticket": code.code_id, "expires_at": code.expires_at,
            "mobile_masked": rules.mask_mobile(account.mobile),
        })  # fmt: skip

    async def _count_failure(
        self, uow: IdentityUnitOfWork, account: Account | None, user: Throttle,
        address: Throttle, now: datetime,
    ) -> None:  # fmt: skip
        locked = rules.record_failure(user, rules.ACCOUNT_THROTTLE, now)
        rules.record_failure(address, rules.ADDRESS_THROTTLE, now)
        await uow.throttles.save(user)
        await uow.throttles.save(address)
        if account is not None:
            await self._emit(uow, account, ev.LoginFailed, now, reason="wrong_password")
            if locked and user.blocked_until is not None:
                await self._emit(uow, account, ev.AccountLocked, now,
                                 locked_until=user.blocked_until)  # fmt: skip
            await uow.accounts.save(account)

    async def login_with_sms(self, command: c.LoginWithSms, uow: IdentityUnitOfWork) -> Result:
        """ID-5: the SMS code after the password; 5 tries per code, 100 failures lock."""
        now = self.wall.now()
        code = await uow.codes.get(command.login_ticket)
        if code is None or code.kind is not CodeKind.LOGIN_SMS:
            return Refused(IdentityError(Reason.CODE_INVALID, _CODE_SPENT))
        account = await self._account(uow, code.customer_id)
        error = await self._check_sms(uow, account, code, command.code, now)
        if error is not None:
            return Refused(error)
        return await self._start_session(uow, account, AMR_SMS, command.client, None)

    async def device_challenge(
        self, command: c.DeviceChallenge, uow: IdentityUnitOfWork
    ) -> Outcome:
        """ID-5: a nonce for a bound device to sign (answered alike for unknown devices)."""
        now = self.wall.now()
        nonce = self.secrets.token()
        device = await uow.devices.get(command.device_id)
        code = OneTimeCode(
            code_id=self.secrets.new_id(), kind=CodeKind.DEVICE_CHALLENGE,
            customer_id=device.customer_id if device else "", code_hash=self._hash(nonce),
            created_at=now, expires_at=now + rules.DEVICE_CHALLENGE_VALIDITY,
            reference=command.device_id, target=nonce,
        )  # fmt: skip
        await uow.codes.add(code)
        return Outcome("challenge", {"challenge_id": code.code_id, "nonce": nonce,
                                     "expires_at": code.expires_at})  # fmt: skip

    async def _proven_device(
        self, uow: IdentityUnitOfWork, account: Account, command: c.Login, now: datetime
    ) -> str | None:
        if not (command.device_id and command.challenge_id and command.signature):
            return None
        challenge = await uow.codes.get(command.challenge_id)
        device = await uow.devices.get(command.device_id)
        if (
            challenge is None
            or challenge.kind is not CodeKind.DEVICE_CHALLENGE
            or not challenge.usable(now)
            or challenge.reference != command.device_id
            or device is None
            or device.customer_id != account.customer_id
            or device.revoked_at is not None
        ):
            return None
        challenge.used_at = now
        await uow.codes.save(challenge)
        message = device_login_message(challenge.code_id, challenge.target)
        if not self.device_signatures.verify(device.public_key, message, command.signature):
            return None
        device.last_used_at = now
        await uow.devices.save(device)
        return device.device_id

    async def _start_session(
        self, uow: IdentityUnitOfWork, account: Account, amr: tuple[str, ...], client: str,
        device_id: str | None,
    ) -> Outcome:  # fmt: skip
        now = self.wall.now()
        session = Session(
            session_id=self.secrets.new_id(), customer_id=account.customer_id, created_at=now,
            last_used_at=now, auth_time=now, amr=amr, device_id=device_id, client=client,
        )  # fmt: skip
        await uow.sessions.add(session)
        previous = account.last_login_at
        account.last_login_at = now
        await self._emit(uow, account, ev.LoginSucceeded, now,
                         session_id=session.session_id, amr=amr)  # fmt: skip
        await uow.accounts.save(account)
        tokens = await self._tokens(uow, session, now)
        return Outcome("authenticated", tokens | {"previous_login_at": previous})

    async def _tokens(
        self, uow: IdentityUnitOfWork, session: Session, now: datetime
    ) -> dict[str, object]:
        key = await self._signing_key(uow, now)
        expires = now + self.config.access_token_ttl
        second_factor = "mfa" in session.amr
        claims: dict[str, Any] = {
            "iss": self.config.issuer, "aud": self.config.audience,
            "sub": session.customer_id, "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()), "jti": self.secrets.new_id(),
            "sid": session.session_id, "auth_time": int(session.auth_time.timestamp()),
            "amr": list(session.amr), "acr": ACR_TWO_FACTOR if second_factor else ACR_PASSWORD,
        }  # fmt: skip
        refresh = self.secrets.token()
        await uow.sessions.add_refresh(
            RefreshToken(self._hash(refresh), session.session_id, issued_at=now)
        )
        return {
            "access_token": self.signer.sign(claims, key.private_jwk),
            "token_type": "Bearer",
            "expires_in": int(self.config.access_token_ttl.total_seconds()),
            "refresh_token": refresh,
            "session_id": session.session_id,
            "amr": list(session.amr),
            "acr": claims["acr"],
        }

    async def refresh(self, command: c.Refresh, uow: IdentityUnitOfWork) -> Result:
        """ID-4: every refresh token is used once; reusing a spent one ends the session
        (the whole family); a session idle for 15 minutes has ended."""
        now = self.wall.now()
        refused = Refused(IdentityError(Reason.UNAUTHENTICATED, "Bitte melden Sie sich an."))
        token = await uow.sessions.refresh(self._hash(command.refresh_token))
        if token is None:
            return refused
        session = await uow.sessions.get(token.session_id)
        if session is None or session.revoked_at is not None:
            return refused
        if token.spent_at is not None:
            log.warning("refresh_token_reused", session_id=session.session_id)
            await self._revoke(uow, session, now, "refresh_token_reused")
            return refused
        token.spent_at = now
        await uow.sessions.save_refresh(token)
        if (
            now - session.last_used_at > self.config.session_idle
            or now - session.created_at > self.config.session_max
        ):
            await self._revoke(uow, session, now, "idle")
            return refused
        account = await uow.accounts.get(session.customer_id)
        if account is None or account.status is AccountStatus.CANCELLED:
            return refused
        session.last_used_at = now
        await uow.sessions.save(session)
        return Outcome("authenticated", await self._tokens(uow, session, now))

    async def logout(self, command: c.Logout, uow: IdentityUnitOfWork) -> Outcome:
        """ID-4: the session of this refresh token ends (answered alike for unknown ones)."""
        token = await uow.sessions.refresh(self._hash(command.refresh_token))
        session = await uow.sessions.get(token.session_id) if token else None
        if session is not None and session.revoked_at is None:
            await self._revoke(uow, session, self.wall.now(), "logout")
        return Outcome("logged_out")

    async def _revoke(
        self, uow: IdentityUnitOfWork, session: Session, now: datetime, reason: str
    ) -> None:
        session.revoked_at = now
        session.revoked_reason = reason
        await uow.sessions.save(session)

    async def _revoke_all(
        self, uow: IdentityUnitOfWork, customer_id: str, now: datetime, reason: str
    ) -> None:
        for session in await uow.sessions.of_customer(customer_id):
            if session.revoked_at is None:
                await self._revoke(uow, session, now, reason)

    async def sessions(self, command: c.CustomerQuery, uow: IdentityUnitOfWork) -> Outcome:
        """ID-5: the customer's open sessions."""
        now = self.wall.now()
        open_sessions = [
            {"session_id": s.session_id, "created_at": s.created_at, "amr": list(s.amr),
             "last_used_at": s.last_used_at, "device_id": s.device_id}
            for s in await uow.sessions.of_customer(command.customer_id)
            if s.revoked_at is None and now - s.last_used_at <= self.config.session_idle
        ]  # fmt: skip
        return Outcome("sessions", {"sessions": open_sessions})

    async def revoke_session(self, command: c.RevokeSession, uow: IdentityUnitOfWork) -> Outcome:
        session = await uow.sessions.get(command.session_id)
        if session is None or session.customer_id != command.customer_id:
            raise IdentityError(Reason.NOT_FOUND, "Diese Sitzung gibt es nicht.")
        if session.revoked_at is None:
            await self._revoke(uow, session, self.wall.now(), "revoked_by_customer")
        return Outcome("revoked")

    # ------------------------------------------------------------ OPS-1 operators

    async def create_operator(self, command: c.CreateOperator, uow: IdentityUnitOfWork) -> Outcome:
        """OPS-1: an operator account with a mandatory TOTP second factor; the secret is
        shown once, to be entered into an authenticator app."""
        username = normalise_username(command.username)
        if not 3 <= len(username) <= 64 or any(ch.isspace() for ch in username):
            raise IdentityError(Reason.INVALID_INPUT, "username: 3 to 64 characters, no spaces")
        context = rules.PasswordContext(username, "", "", date.min)  # no personal data
        problems = rules.password_problems(
            command.password, context, is_breached=self.checks.is_breached,
            strength=self.checks.strength,
        )  # fmt: skip
        if problems:
            raise IdentityError(Reason.WEAK_PASSWORD, " ".join(problems), problems=problems)
        secret = (
            command.totp_secret
            or base64.b32encode(
                hashlib.sha256(self.secrets.token().encode()).digest()[:20]
            ).decode()
        )
        operator = Operator(
            operator_id=f"op-{self.secrets.new_id()}", username=username,
            username_key=username_key(username), password_hash=self.hasher.hash(command.password),
            totp_secret=secret, created_at=self.wall.now(),
        )  # fmt: skip
        try:
            await uow.operators.add(operator)
        except OperatorTaken:
            raise IdentityError(Reason.CONFLICT, "an operator with this username exists") from None
        return Outcome("operator_created", {
            "operator_id": operator.operator_id, "username": username, "totp_secret": secret,
        })  # fmt: skip

    async def operator_login(self, command: c.OperatorLogin, uow: IdentityUnitOfWork) -> Result:
        """OPS-1: password AND one-time password in one step (no token without the second
        factor); a used code is spent; failures are throttled like customers' logins.
        The token has the operator audience and `role: operator`, so customer routes
        (audience `portal`) refuse it."""
        now = self.wall.now()
        key = username_key(command.username)
        throttle = await uow.throttles.get(f"operator:{key}")
        address = await uow.throttles.get(f"addr:{command.client}")
        wait = max(rules.blocked_seconds(throttle, now), rules.blocked_seconds(address, now))
        if wait:
            self.hasher.verify_dummy(command.password)
            return Refused(_throttled(wait))
        operator = await uow.operators.by_username(key)
        step = None
        if operator is None or operator.disabled_at is not None:
            self.hasher.verify_dummy(command.password)
        elif self.hasher.verify(operator.password_hash, command.password):
            step = matching_step(operator.totp_secret, command.otp, now, operator.last_totp_step)
        if operator is None or step is None:
            rules.record_failure(throttle, rules.ACCOUNT_THROTTLE, now)
            rules.record_failure(address, rules.ADDRESS_THROTTLE, now)
            await uow.throttles.save(throttle)
            await uow.throttles.save(address)
            return Refused(IdentityError(Reason.LOGIN_FAILED, _LOGIN_FAILED))
        rules.clear_failures(throttle)
        await uow.throttles.save(throttle)
        operator.last_totp_step = step
        operator.last_login_at = now
        await uow.operators.save(operator)
        signing_key = await self._signing_key(uow, now)
        expires = now + self.config.operator_token_ttl
        claims: dict[str, Any] = {
            "iss": self.config.issuer, "aud": self.config.operator_audience,
            "sub": operator.operator_id, "preferred_username": operator.username,
            "role": OPERATOR_ROLE, "iat": int(now.timestamp()), "exp": int(expires.timestamp()),
            "jti": self.secrets.new_id(), "auth_time": int(now.timestamp()),
            "amr": ["pwd", "otp", "mfa"], "acr": ACR_TWO_FACTOR,
        }  # fmt: skip
        log.info("operator_login", operator_id=operator.operator_id)
        return Outcome("authenticated", {
            "access_token": self.signer.sign(claims, signing_key.private_jwk),
            "token_type": "Bearer",
            "expires_in": int(self.config.operator_token_ttl.total_seconds()),
            "role": OPERATOR_ROLE, "operator_id": operator.operator_id,
            "username": operator.username,
        })  # fmt: skip

    # ------------------------------------------------------------ ID-3 activation

    async def activate(self, command: c.Activate, uow: IdentityUnitOfWork) -> Result:
        """ID-3: the code from the letter; a wrong code counts as a failed login."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        if account.activated:
            return Outcome("activated")
        throttle = await uow.throttles.get(f"user:{account.username_key}")
        wait = rules.blocked_seconds(throttle, now)
        if wait:
            return Refused(_throttled(wait))
        codes = [
            k
            for k in await uow.codes.of_customer(account.customer_id, CodeKind.ACTIVATION)
            if k.purpose == "activate"
        ]
        business_now = self.clock.now()
        for code in codes:
            if (
                code.used_at is None
                and business_now < code.expires_at
                and self._matches(code, _normalise_code(command.code))
            ):
                code.used_at = business_now
                await uow.codes.save(code)
                account.activated = True
                await self._emit(uow, account, ev.AccountActivated, now)
                await uow.accounts.save(account)
                return Outcome("activated")
        address = await uow.throttles.get("addr:activation")
        await self._count_failure(uow, account, throttle, address, now)
        return Refused(IdentityError(Reason.CODE_INVALID, _CODE_WRONG))

    async def request_activation_letter(
        self, command: c.RequestActivationLetter, uow: IdentityUnitOfWork
    ) -> Outcome:
        """ID-3: a new letter when the last code expired; ID-5: a letter that lets a
        customer bind a new mobile number without the old one."""
        account = await self._account(uow, command.customer_id)
        if command.purpose == "activate":
            if not account.customer or account.activated:
                raise IdentityError(
                    Reason.CONFLICT, "Für Ihr Konto ist kein Aktivierungscode vorgesehen."
                )
        elif command.purpose != "rebind_mobile":
            raise IdentityError(Reason.INVALID_INPUT, "Unbekannter Zweck.")
        business_now = self.clock.now()
        for code in await uow.codes.of_customer(account.customer_id, CodeKind.ACTIVATION):
            if code.purpose == command.purpose and code.usable(business_now):
                raise IdentityError(
                    Reason.CONFLICT,
                    "Ein Brief mit gültigem Code ist bereits unterwegs.",
                    valid_until=code.expires_at.isoformat(),
                )
        code = await self._issue_activation_code(uow, account, command.purpose)
        await uow.accounts.save(account)
        return Outcome("letter_requested", {"expires_at": code.expires_at})

    async def _issue_activation_code(
        self, uow: IdentityUnitOfWork, account: Account, purpose: str,
        address: Address | None = None,
    ) -> OneTimeCode:  # fmt: skip
        business_now = self.clock.now()
        value = self.secrets.activation_code()
        code = OneTimeCode(
            code_id=self.secrets.new_id(), kind=CodeKind.ACTIVATION,
            customer_id=account.customer_id, code_hash=self._hash(_normalise_code(value)),
            created_at=business_now, expires_at=business_now + rules.ACTIVATION_VALIDITY,
            purpose=purpose,
        )  # fmt: skip
        await uow.codes.add(code)
        a = address or await self._letter_address(uow, account)
        await self._emit(uow, account, ev.ActivationCodeIssued, self.wall.now(),
            expires_at=code.expires_at, code=value,
            address=PostalAddress(recipient=a.recipient, street=a.street,
                                  postal_code=a.postal_code, city=a.city, country=a.country),
        )  # fmt: skip
        return code

    # ------------------------------------------------------------ ID-5 SMS factor

    async def start_two_factor(self, command: c.StartTwoFactor, uow: IdentityUnitOfWork) -> Result:
        """ID-5: store the number and send it a code; confirming turns the factor on."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        if account.two_factor:
            raise IdentityError(
                Reason.CONFLICT, "Die Zwei-Faktor-Anmeldung ist bereits eingeschaltet."
            )
        return await self._verify_new_mobile(uow, account, command.mobile, now)

    async def _verify_new_mobile(
        self, uow: IdentityUnitOfWork, account: Account, mobile: str, now: datetime
    ) -> Result:
        mobile = _normalise_mobile(mobile)
        account.pending_mobile = mobile
        code, error = await self._send_sms_code(
            uow, account, mobile, CodeKind.MTAN, "verify_mobile", self._hash(mobile), now
        )
        await uow.accounts.save(account)
        if error is not None:
            return Refused(error)
        assert code is not None
        return Outcome("code_sent", {"expires_at": code.expires_at,
                                     "mobile_masked": rules.mask_mobile(mobile)})  # fmt: skip

    async def confirm_mobile(self, command: c.ConfirmMobile, uow: IdentityUnitOfWork) -> Result:
        """ID-5/ID-8: the code sent to the new number binds it; 2FA is on, every session
        ends (the customer logs in again, now with the factor)."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        pending = account.pending_mobile
        codes = [
            k for k in await uow.codes.of_customer(account.customer_id, CodeKind.MTAN)
            if k.purpose == "verify_mobile" and pending and k.reference == self._hash(pending)
            and k.usable(now)
        ]  # fmt: skip
        if not codes or pending is None:
            return Refused(IdentityError(Reason.CODE_INVALID, _CODE_SPENT))
        code = max(codes, key=lambda k: k.created_at)
        error = await self._check_sms(uow, account, code, command.code, now)
        if error is not None:
            return Refused(error)
        previous = account.mobile
        account.mobile = pending
        account.pending_mobile = None
        await self._emit(uow, account, ev.ContactDetailsChanged, now,
                         mobile=pending, previous_mobile=previous)  # fmt: skip
        if not account.two_factor:
            account.two_factor = True
            await self._emit(uow, account, ev.TwoFactorEnabled, now,
                             mobile_masked=rules.mask_mobile(pending))  # fmt: skip
        await uow.accounts.save(account)
        await self._revoke_all(uow, account.customer_id, now, "second_factor_changed")
        return Outcome("mobile_confirmed", {"login_again": True})

    async def change_mobile(self, command: c.ChangeMobile, uow: IdentityUnitOfWork) -> Result:
        """ID-5/ID-8: a new number is a new factor: it needs the old one (mTAN) or the
        code of a fresh letter (purpose rebind_mobile)."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        if not account.two_factor:
            return await self._verify_new_mobile(uow, account, command.mobile, now)
        mobile = _normalise_mobile(command.mobile)
        if command.activation_code:
            if not await self._take_letter_code(uow, account, command.activation_code):
                return Refused(IdentityError(Reason.CODE_INVALID, _CODE_WRONG))
        else:
            pending = await self._require_mtan(
                uow, account, "change_mobile", {"mobile": mobile}, command.mtan_id, now
            )
            if pending is not None:
                return pending
        return await self._verify_new_mobile(uow, account, mobile, now)

    async def _take_letter_code(
        self, uow: IdentityUnitOfWork, account: Account, value: str
    ) -> bool:
        business_now = self.clock.now()
        for code in await uow.codes.of_customer(account.customer_id, CodeKind.ACTIVATION):
            if (
                code.purpose == "rebind_mobile"
                and code.usable(business_now)
                and self._matches(code, _normalise_code(value))
            ):
                code.used_at = business_now
                await uow.codes.save(code)
                return True
        return False

    async def disable_two_factor(
        self, command: c.DisableTwoFactor, uow: IdentityUnitOfWork
    ) -> Result:
        """ID-5/ID-6: turning the factor off is confirmed with an mTAN."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        if not account.two_factor:
            return Outcome("two_factor_off")
        pending = await self._require_mtan(
            uow, account, "disable_two_factor", {}, command.mtan_id, now
        )
        if pending is not None:
            return pending
        account.two_factor = False
        await self._emit(uow, account, ev.TwoFactorDisabled, now)
        await uow.accounts.save(account)
        return Outcome("two_factor_off")

    async def _send_sms_code(
        self, uow: IdentityUnitOfWork, account: Account, mobile: str, kind: CodeKind,
        purpose: str, reference: str, now: datetime,
    ) -> tuple[OneTimeCode | None, IdentityError | None]:  # fmt: skip
        """ID-5: sends limited per account and per number; the code goes only into the
        event for the notifier (codes topic), stored here as a keyed hash."""
        per_account = await uow.throttles.get(f"sms-account:{account.customer_id}")
        per_number = await uow.throttles.get(f"sms-number:{self._hash(mobile)}")
        wait = rules.take_send(per_account, rules.SMS_PER_ACCOUNT, now) or rules.take_send(
            per_number, rules.SMS_PER_NUMBER, now
        )
        await uow.throttles.save(per_account)
        await uow.throttles.save(per_number)
        if wait:
            return None, IdentityError(
                Reason.SMS_RATE_LIMITED,
                "Es wurden zu viele SMS-Codes angefordert. Bitte versuchen Sie es später.",
                retry_after=wait,
            )
        value = self.secrets.sms_code()
        validity = rules.MTAN_VALIDITY if kind is CodeKind.MTAN else rules.SMS_CODE_VALIDITY
        code = OneTimeCode(
            code_id=self.secrets.new_id(), kind=kind, customer_id=account.customer_id,
            code_hash=self._hash(value), created_at=now, expires_at=now + validity,
            purpose=purpose, reference=reference, target=self._hash(mobile),
        )  # fmt: skip
        await uow.codes.add(code)
        if kind is CodeKind.LOGIN_SMS:
            await self._emit(
                uow,
                account,
                ev.LoginCodeRequested,
                now,
                expires_at=code.expires_at,
                code=value,
                mobile=mobile,
            )
        else:
            await self._emit(uow, account, ev.MtanRequested, now, expires_at=code.expires_at,
                             code=value, mobile=mobile, purpose=purpose)  # fmt: skip
        return code, None

    async def _check_sms(
        self, uow: IdentityUnitOfWork, account: Account, code: OneTimeCode, value: str,
        now: datetime,
    ) -> IdentityError | None:  # fmt: skip
        if account.sms_factor_locked:
            return _factor_locked()
        outcome = rules.check_code(code, self._matches(code, value.strip()), now)
        await uow.codes.save(code)
        match outcome:
            case CodeCheck.OK:
                account.sms_failures = 0
                await uow.accounts.save(account)
                return None
            case CodeCheck.WRONG | CodeCheck.SPENT:
                account.sms_failures += 1
                if account.sms_failures >= rules.MAX_SMS_FAILURES:
                    account.sms_factor_locked = True
                await uow.accounts.save(account)
                return IdentityError(
                    Reason.CODE_INVALID,
                    _CODE_WRONG if outcome is CodeCheck.WRONG else _CODE_SPENT,
                )
            case _:
                assert_never(outcome)

    # ------------------------------------------------------------ ID-6 mTAN

    async def request_mtan(self, command: c.RequestMtan, uow: IdentityUnitOfWork) -> Result:
        """ID-6: an SMS code for a named operation, bound to its parameters' hash."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        if not command.purpose or not command.reference:
            raise IdentityError(Reason.INVALID_INPUT, "Zweck und Referenz sind nötig.")
        code_or_error = await self._issue_mtan(
            uow, account, command.purpose, command.reference, now
        )
        if isinstance(code_or_error, IdentityError):
            return Refused(code_or_error)
        return Outcome("mtan_sent", _mtan_view(code_or_error))

    async def _issue_mtan(
        self, uow: IdentityUnitOfWork, account: Account, purpose: str, reference: str,
        now: datetime,
    ) -> OneTimeCode | IdentityError:  # fmt: skip
        if not account.two_factor or account.mobile is None:
            raise IdentityError(
                Reason.SECOND_FACTOR_REQUIRED,
                "Für diese Änderung brauchen Sie eine bestätigte Mobilnummer. Bitte schalten"
                " Sie unter Meine Daten > Sicherheit die Zwei-Faktor-Anmeldung ein.",
            )
        if account.sms_factor_locked:
            return _factor_locked()
        code, error = await self._send_sms_code(
            uow, account, account.mobile, CodeKind.MTAN, purpose, reference, now
        )
        await uow.accounts.save(account)
        if error is not None:
            return error
        assert code is not None
        return code

    async def confirm_mtan(self, command: c.ConfirmMtan, uow: IdentityUnitOfWork) -> Result:
        """ID-6: the customer types the code; the operation may then use it once."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        code = await uow.codes.get(command.mtan_id)
        if (
            code is None
            or code.kind is not CodeKind.MTAN
            or code.customer_id != account.customer_id
        ):
            raise IdentityError(Reason.NOT_FOUND, "Diese mTAN gibt es nicht.")
        if code.confirmed_at is not None:
            return Outcome("mtan_confirmed", _mtan_view(code))
        error = await self._check_sms(uow, account, code, command.code, now)
        if error is not None:
            return Refused(error)
        code.confirmed_at = now
        await uow.codes.save(code)
        return Outcome("mtan_confirmed", _mtan_view(code))

    async def consume_mtan(self, command: c.ConsumeMtan, uow: IdentityUnitOfWork) -> Outcome:
        """ID-6, for other services: what the mTAN confirms. A confirmed one for exactly
        this customer and reference is used up by this call: it confirms that one change
        only, never another reference nor identity's own operations. Asking again for the
        same customer and reference (the caller's retry: its transaction rolled back or its
        process died after we answered, or another instance of it asks) answers the same
        confirmation while it is fresh - the caller keys its change by the mTAN id, so the
        answer cannot make a second change."""
        now = self.wall.now()
        code = await uow.codes.get(command.mtan_id)
        if (
            code is None
            or code.kind is not CodeKind.MTAN
            or code.customer_id != command.customer_id
        ):
            raise IdentityError(Reason.NOT_FOUND, "unknown mTAN")
        same_change = hmac.compare_digest(code.reference, command.reference)
        confirmed = (
            code.confirmed_at is not None
            and (code.consumed_at is None or same_change)
            and now - code.confirmed_at <= rules.MTAN_CONFIRMATION_VALIDITY
        )
        if confirmed and same_change and code.consumed_at is None:
            code.consumed_at = now
            await uow.codes.save(code)
        return Outcome("mtan", {
            "customer_id": code.customer_id, "purpose": code.purpose,
            "reference": code.reference, "confirmed": confirmed,
            "confirmed_at": code.confirmed_at,
        })  # fmt: skip

    async def _require_mtan(
        self, uow: IdentityUnitOfWork, account: Account, purpose: str,
        parameters: dict[str, str], mtan_id: str | None, now: datetime,
    ) -> Result | None:  # fmt: skip
        """ID-6 for identity's own operations: without `mtan_id` an mTAN bound to these
        parameters is sent (answer: mtan_required); with it, it must be confirmed, fresh,
        unused and for exactly this operation. None: go ahead."""
        reference = self._hash(json.dumps({"purpose": purpose, **parameters}, sort_keys=True))
        if mtan_id is None:
            issued = await self._issue_mtan(uow, account, purpose, reference, now)
            if isinstance(issued, IdentityError):
                return Refused(issued)
            return Outcome("mtan_required", _mtan_view(issued))
        code = await uow.codes.get(mtan_id)
        if (
            code is None
            or code.kind is not CodeKind.MTAN
            or code.customer_id != account.customer_id
            or code.purpose != purpose
            or not hmac.compare_digest(code.reference, reference)
            or code.confirmed_at is None
            or code.consumed_at is not None
            or now - code.confirmed_at > rules.MTAN_CONFIRMATION_VALIDITY
        ):
            raise IdentityError(
                Reason.MTAN_REQUIRED,
                "Die mTAN passt nicht zu dieser Änderung oder ist nicht mehr gültig."
                " Bitte fordern Sie eine neue an.",
            )
        code.consumed_at = now
        await uow.codes.save(code)
        return None

    # ------------------------------------------------------------ ID-5 devices

    async def bind_device(self, command: c.BindDevice, uow: IdentityUnitOfWork) -> Outcome:
        """ID-5: after a login with the SMS code, the app registers its public key."""
        now = self.wall.now()
        if "sms" not in command.amr:
            raise IdentityError(
                Reason.SECOND_FACTOR_REQUIRED,
                "Ein Gerät kann nur nach einer Anmeldung mit SMS-Code gebunden werden.",
            )
        if not self.device_signatures.valid_public_key(command.public_key):
            raise IdentityError(Reason.INVALID_INPUT, "Der Geräteschlüssel ist ungültig.")
        account = await self._account(uow, command.customer_id)
        device = Device(self.secrets.new_id(), account.customer_id, command.public_key,
                        command.name.strip()[:100], bound_at=now)  # fmt: skip
        await uow.devices.add(device)
        await self._emit(uow, account, ev.DeviceBound, now,
                         device_id=device.device_id, device_name=device.name)  # fmt: skip
        await uow.accounts.save(account)
        return Outcome("device_bound", {"device_id": device.device_id})

    async def devices(self, command: c.CustomerQuery, uow: IdentityUnitOfWork) -> Outcome:
        return Outcome("devices", {"devices": [
            {"device_id": d.device_id, "name": d.name, "bound_at": d.bound_at,
             "last_used_at": d.last_used_at}
            for d in await uow.devices.of_customer(command.customer_id) if d.revoked_at is None
        ]})  # fmt: skip

    async def revoke_device(self, command: c.RevokeDevice, uow: IdentityUnitOfWork) -> Outcome:
        now = self.wall.now()
        device = await uow.devices.get(command.device_id)
        if device is None or device.customer_id != command.customer_id:
            raise IdentityError(Reason.NOT_FOUND, "Dieses Gerät gibt es nicht.")
        if device.revoked_at is None:
            device.revoked_at = now
            await uow.devices.save(device)
            account = await self._account(uow, command.customer_id)
            await self._emit(uow, account, ev.DeviceRevoked, now, device_id=device.device_id)
            await uow.accounts.save(account)
            for session in await uow.sessions.of_customer(command.customer_id):
                if session.device_id == device.device_id and session.revoked_at is None:
                    await self._revoke(uow, session, now, "device_revoked")
        return Outcome("revoked")

    # ------------------------------------------------------------ ID-7 recovery

    async def remind_username(self, command: c.RemindUsername, uow: IdentityUnitOfWork) -> Outcome:
        """ID-7: the username goes to the verified address; the answer is always the same."""
        now = self.wall.now()
        email = normalise_email(command.email)
        for account in await uow.accounts.by_email(email):
            if account.email_verified and account.status is AccountStatus.ACTIVE:
                limit = await uow.throttles.get(f"reminder:{account.customer_id}")
                if rules.take_send(limit, rules.SendLimit(3, timedelta(hours=1)), now) == 0:
                    await self._emit(
                        uow,
                        account,
                        ev.UsernameReminderRequested,
                        now,
                        email=account.email,
                        username=account.username,
                    )
                    await uow.accounts.save(account)
                await uow.throttles.save(limit)
        return Outcome("accepted")

    async def request_password_reset(
        self, command: c.RequestPasswordReset, uow: IdentityUnitOfWork
    ) -> Outcome:
        """ID-7: a single-use link valid 30 minutes to the verified address; always the
        same answer."""
        now = self.wall.now()
        account = await uow.accounts.by_username(username_key(command.username))
        if (
            account is None
            or not account.email_verified
            or account.status is not AccountStatus.ACTIVE
        ):
            return Outcome("accepted")
        limit = await uow.throttles.get(f"reset:{account.customer_id}")
        allowed = rules.take_send(limit, rules.SendLimit(3, timedelta(hours=1)), now) == 0
        await uow.throttles.save(limit)
        if not allowed:
            return Outcome("accepted")
        for old in await uow.codes.of_customer(account.customer_id, CodeKind.PASSWORD_RESET):
            if old.used_at is None:
                old.used_at = now  # one valid link at a time
                await uow.codes.save(old)
        secret = self.secrets.token()
        code = OneTimeCode(
            code_id=self.secrets.new_id(), kind=CodeKind.PASSWORD_RESET,
            customer_id=account.customer_id, code_hash=self._hash(secret), created_at=now,
            expires_at=now + rules.RESET_VALIDITY,
        )  # fmt: skip
        await uow.codes.add(code)
        await self._emit(uow, account, ev.PasswordResetRequested, now,
            expires_at=code.expires_at, email=account.email,
            reset_url=f"{self.config.reset_url}{code.code_id}.{secret}",
        )  # fmt: skip
        await uow.accounts.save(account)
        return Outcome("accepted")

    async def reset_password(self, command: c.ResetPassword, uow: IdentityUnitOfWork) -> Result:
        """ID-7: a new password with the link's token; with 2FA on, also the SMS code
        (reset never bypasses the second factor). Clears the login lock (ID-4)."""
        now = self.wall.now()
        invalid = IdentityError(Reason.CODE_INVALID, "Der Link ist ungültig oder abgelaufen.")
        code_id, _, secret = command.token.partition(".")
        code = await uow.codes.get(code_id) if code_id else None
        if (
            code is None
            or code.kind is not CodeKind.PASSWORD_RESET
            or not code.usable(now)
            or not self._matches(code, secret)
        ):
            raise invalid
        account = await self._account(uow, code.customer_id)
        self._check_password(
            command.new_password, account.username, account.first_name, account.last_name,
            account,
        )  # fmt: skip
        if account.two_factor:
            if command.mtan_id is None or command.mtan_code is None:
                reference = self._hash(f"password_reset:{code.code_id}")
                issued = await self._issue_mtan(uow, account, "password_reset", reference, now)
                if isinstance(issued, IdentityError):
                    return Refused(issued)
                return Outcome("mtan_required", _mtan_view(issued))
            mtan = await uow.codes.get(command.mtan_id)
            if (
                mtan is None
                or mtan.customer_id != account.customer_id
                or mtan.purpose != "password_reset"
                or mtan.reference != self._hash(f"password_reset:{code.code_id}")
            ):
                raise invalid
            error = await self._check_sms(uow, account, mtan, command.mtan_code, now)
            if error is not None:
                return Refused(error)
        code.used_at = now
        await uow.codes.save(code)
        account.password_hash = self.hasher.hash(command.new_password)
        throttle = await uow.throttles.get(f"user:{account.username_key}")
        rules.clear_failures(throttle)
        await uow.throttles.save(throttle)
        await self._revoke_all(uow, account.customer_id, now, "password_reset")
        await self._emit(uow, account, ev.PasswordChanged, now, how="reset")
        await uow.accounts.save(account)
        return Outcome("password_changed")

    # ------------------------------------------------------------ ID-2/6/8 changes

    async def change_password(self, command: c.ChangePassword, uow: IdentityUnitOfWork) -> Result:
        """ID-2/ID-6: the current password, and an mTAN when 2FA is on."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        self._require_password(account, command.current_password)
        self._check_password(
            command.new_password, account.username, account.first_name, account.last_name,
            account,
        )  # fmt: skip
        if account.two_factor:
            digest = hashlib.sha256(command.new_password.encode()).hexdigest()
            pending = await self._require_mtan(
                uow, account, "change_password", {"password": digest}, command.mtan_id, now
            )
            if pending is not None:
                return pending
        account.password_hash = self.hasher.hash(command.new_password)
        await self._emit(uow, account, ev.PasswordChanged, now, how="change")
        await uow.accounts.save(account)
        return Outcome("password_changed")

    async def change_email(self, command: c.ChangeEmail, uow: IdentityUnitOfWork) -> Result:
        """ID-8/ID-6: a code to the new address; the change happens when it is entered."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        self._require_password(account, command.current_password)
        email = normalise_email(command.email)
        if "@" not in email:
            raise IdentityError(Reason.INVALID_INPUT, "Bitte geben Sie eine E-Mail-Adresse an.")
        if account.two_factor:
            pending = await self._require_mtan(
                uow, account, "change_email", {"email": email}, command.mtan_id, now
            )
            if pending is not None:
                return pending
        account.pending_email = email
        await self._send_email_code(uow, account, email, now)
        await uow.accounts.save(account)
        return Outcome("code_sent")

    async def cancel_account(self, command: c.CancelAccount, uow: IdentityUnitOfWork) -> Result:
        """ID-9: refused with the reason while an investment contract (Allianz Global
        Investors, Allvest, Fourmore) is held; otherwise AccountCancelled."""
        now = self.wall.now()
        account = await self._account(uow, command.customer_id)
        self._require_password(account, command.current_password)
        blocking = sorted({
            rules.CARRIER_NAMES[p.carrier]
            for p in await uow.policies.of_holder(account.customer_id)
            if not p.cancelled and p.carrier in rules.BLOCKING_CARRIERS
        })  # fmt: skip
        if blocking:
            raise IdentityError(
                Reason.CANCELLATION_REFUSED,
                "Ihr Konto kann nicht gekündigt werden, solange Sie einen Vertrag bei "
                + ", ".join(blocking) + " haben: diese Verträge werden über das Portal geführt.",
                carriers=blocking,
            )  # fmt: skip
        if account.two_factor:
            pending = await self._require_mtan(
                uow, account, "cancel_account", {}, command.mtan_id, now
            )
            if pending is not None:
                return pending
        account.status = AccountStatus.CANCELLED
        await self._revoke_all(uow, account.customer_id, now, "account_cancelled")
        for device in await uow.devices.of_customer(account.customer_id):
            if device.revoked_at is None:
                device.revoked_at = now
                await uow.devices.save(device)
        await self._emit(uow, account, ev.AccountCancelled, now)
        await uow.accounts.save(account)
        return Outcome("account_cancelled")

    async def profile(self, command: c.CustomerQuery, uow: IdentityUnitOfWork) -> Outcome:
        account = await self._account(uow, command.customer_id)
        return Outcome("profile", {
            "customer_id": account.customer_id, "username": account.username,
            "first_name": account.first_name, "last_name": account.last_name,
            "email": account.email, "email_verified": account.email_verified,
            "customer": account.customer, "activated": account.activated,
            "limited_portal": not (account.customer and account.activated),
            "two_factor": account.two_factor,
            "mobile_masked": rules.mask_mobile(account.mobile) if account.mobile else None,
            "last_login_at": account.last_login_at,
        })  # fmt: skip

    # ------------------------------------------------------------ ID-4 keys

    async def published_keys(self, command: c.PublishedKeys, uow: IdentityUnitOfWork) -> Outcome:
        """ID-4: the JWKS: the signing key and every retired key whose tokens may live."""
        now = self.wall.now()
        await self._signing_key(uow, now)
        keep = self.config.access_token_ttl + self.config.token_leeway
        keys = [k.public_jwk for k in await uow.signing_keys.all() if k.published(now, keep)]
        return Outcome("jwks", {"keys": keys})

    async def rotate_signing_key(
        self, command: c.RotateSigningKey, uow: IdentityUnitOfWork
    ) -> Outcome:
        now = self.wall.now()
        key = await self._rotate(uow, now)
        return Outcome("rotated", {"kid": key.kid})

    async def _signing_key(self, uow: IdentityUnitOfWork, now: datetime) -> SigningKey:
        current = [k for k in await uow.signing_keys.all() if k.retired_at is None]
        if current:
            newest = max(current, key=lambda k: k.created_at)
            if now - newest.created_at < self.config.key_rotation:
                return newest
        return await self._rotate(uow, now)

    async def _rotate(self, uow: IdentityUnitOfWork, now: datetime) -> SigningKey:
        for key in await uow.signing_keys.all():
            if key.retired_at is None:
                key.retired_at = now
                await uow.signing_keys.save(key)
        kid = f"{now:%Y%m%d%H%M%S}-{self.secrets.new_id()[:8]}"
        private, public = self.signer.new_key(kid)
        key = SigningKey(kid, private, public, created_at=now)
        await uow.signing_keys.add(key)
        return key

    # ------------------------------------------------------------ policies (stream)

    async def record_policies(self, messages: Sequence[Contract], uow: IdentityUnitOfWork) -> None:
        """Identity's own view of contracts (ID-3 matching and letters, ID-9 refusals).
        Holders' details (personal data) are kept, never logged."""
        for message in messages:
            match message:
                case PolicyIssued():
                    existing = await uow.policies.get(message.policy_id)
                    holders, holders_at = _holders(
                        message.policyholders, message.policyholder_ids, existing,
                        message.occurred_at,
                    )  # fmt: skip
                    await uow.policies.save(Policy(
                        message.policy_id, message.policy_number, message.carrier,
                        message.policyholder_ids,
                        cancelled=existing.cancelled if existing else False,
                        holders=holders, holders_at=holders_at,
                    ))  # fmt: skip
                case PolicyholdersChanged():
                    policy = await uow.policies.get(message.policy_id)
                    if policy is not None:
                        policy.policyholder_ids = message.policyholder_ids
                        policy.holders, policy.holders_at = _holders(
                            message.policyholders, message.policyholder_ids, policy,
                            message.occurred_at,
                        )  # fmt: skip
                        await uow.policies.save(policy)
                case PolicyCancelled():
                    policy = await uow.policies.get(message.policy_id)
                    if policy is not None:
                        policy.cancelled = True
                        await uow.policies.save(policy)
                case MoveReported():
                    await self._record_move(uow, message)
                case _:
                    pass  # other facts of the policy topic do not concern identity

    async def _record_move(self, uow: IdentityUnitOfWork, move: MoveReported) -> None:
        """CT-4/NT-3: identity owns the customer's address. A move the policyholder reported
        on a policy changes it - the account's address and the holder's address on every
        policy identity knows them on (so later letters, ID-3/ID-5, go there) - and
        `AddressChanged` tells the notifier, which confirms it to the old address (NT-2).

        Only an actual change counts: the same move reported on each of the customer's
        policies, or delivered again, changes nothing more. Ignored: a policy identity does
        not know, joint policyholders (the event does not say which of them moved), and a
        holder without an account here (no customer identity knows)."""
        policy = await uow.policies.get(move.policy_id)
        if policy is None or len(policy.policyholder_ids) != 1:
            return
        account = await uow.accounts.get(policy.policyholder_ids[0])
        if account is None:
            return
        a = move.new_address
        new = Address(a.recipient, a.street, a.postal_code, a.city, a.country)
        if rules.same_address(await self._letter_address(uow, account), new):
            return
        await _move_holder(uow, account.customer_id, new, move.occurred_at)
        account.address = new
        await self._emit(uow, account, ev.AddressChanged, self.wall.now(), address=a)
        await uow.accounts.save(account)

    # ------------------------------------------------------------ helpers

    async def _account(self, uow: IdentityUnitOfWork, customer_id: str) -> Account:
        account = await uow.accounts.get(customer_id)
        if account is None or account.status is AccountStatus.CANCELLED:
            raise IdentityError(Reason.UNAUTHENTICATED, "Bitte melden Sie sich an.")
        return account

    def _require_password(self, account: Account, password: str) -> None:
        if not self.hasher.verify(account.password_hash, password):
            raise IdentityError(Reason.LOGIN_FAILED, "Das aktuelle Passwort ist nicht korrekt.")

    async def _send_email_code(
        self, uow: IdentityUnitOfWork, account: Account, email: str, now: datetime
    ) -> None:
        value = self.secrets.activation_code()
        code = OneTimeCode(
            code_id=self.secrets.new_id(), kind=CodeKind.EMAIL_VERIFICATION,
            customer_id=account.customer_id, code_hash=self._hash(_normalise_code(value)),
            created_at=now, expires_at=now + rules.EMAIL_CODE_VALIDITY, target=email,
        )  # fmt: skip
        await uow.codes.add(code)
        await self._emit(uow, account, ev.EmailVerificationCodeIssued, now,
                         expires_at=code.expires_at, code=value, email=email)  # fmt: skip

    async def _emit(
        self, uow: IdentityUnitOfWork, account: Account, event_type: type[ev.CustomerEvent],
        now: datetime, **fields: Any,
    ) -> None:  # fmt: skip
        """One event of the account (its version counts), published through the outbox."""
        account.version += 1
        event: Event = event_type(
            event_id=uuid.uuid4(), aggregate_id=account.customer_id,
            aggregate_version=account.version, occurred_at=now,
            customer_ids=(account.customer_id,), customer_id=account.customer_id, **fields,
        )  # fmt: skip
        await uow.events.enqueue([event])

    def _hash(self, value: str) -> str:
        return self.secrets.keyed_hash(value)

    def _matches(self, code: OneTimeCode, value: str) -> bool:
        return hmac.compare_digest(code.code_hash, self._hash(value))


def _holders(
    details: Sequence[PolicyholderDetails], holder_ids: Sequence[str], known: Policy | None,
    at: datetime,
) -> tuple[tuple[Holder, ...], datetime | None]:  # fmt: skip
    """ID-3: the holders' details an event brings (only for its policyholder ids); an
    event without any keeps the known details of holders it still names."""
    if details:
        holders = tuple(
            Holder(d.customer_id, d.given_name, d.family_name, d.birth_date, Address(
                d.postal_address.recipient, d.postal_address.street,
                d.postal_address.postal_code, d.postal_address.city, d.postal_address.country,
            ))
            for d in details if d.customer_id in holder_ids
        )  # fmt: skip
        return holders, at if holders else None
    if known is None:
        return (), None
    kept = tuple(h for h in known.holders if h.customer_id in holder_ids)
    return kept, known.holders_at if kept else None


async def _move_holder(
    uow: IdentityUnitOfWork, customer_id: str, address: Address, at: datetime
) -> None:
    """CT-4: the holder's address on each policy identity keeps their details on, as of the
    move's business time (the newest address is where letters go, `_letter_address`)."""
    for policy in await uow.policies.of_holder(customer_id):
        if policy.holder(customer_id) is None:
            continue
        policy.holders = tuple(
            replace(h, address=address) if h.customer_id == customer_id else h
            for h in policy.holders
        )
        policy.holders_at = max(filter(None, (policy.holders_at, at)))
        await uow.policies.save(policy)


def device_login_message(challenge_id: str, nonce: str) -> bytes:
    """What a bound device signs with its Ed25519 key to prove possession (ID-5). The
    nonce is not a secret (it is sent to the app), so it is kept in clear."""
    return f"portal-device-login\n{challenge_id}\n{nonce}".encode()


def _mtan_of(code: OneTimeCode, customer_id: str) -> bool:
    return code.kind is CodeKind.MTAN and code.customer_id == customer_id


def _mtan_view(code: OneTimeCode) -> dict[str, object]:
    return {"mtan_id": code.code_id, "purpose": code.purpose, "expires_at": code.expires_at}


def _normalise_code(value: str) -> str:
    return "".join(ch for ch in value.upper() if ch.isalnum())


def _normalise_mobile(mobile: str) -> str:
    digits = "".join(ch for ch in mobile if ch.isdigit() or ch == "+")
    if len(digits.lstrip("+")) < 6 or len(digits) > 20:
        raise IdentityError(Reason.INVALID_INPUT, "Bitte geben Sie eine gültige Mobilnummer an.")
    return digits


def _throttled(seconds: int) -> IdentityError:
    return IdentityError(
        Reason.THROTTLED,
        f"Zu viele Fehlversuche. Bitte versuchen Sie es in {seconds} Sekunden erneut.",
        retry_after=seconds,
    )


def _factor_locked() -> IdentityError:
    return IdentityError(
        Reason.FACTOR_LOCKED,
        "Die Anmeldung per SMS-Code ist nach zu vielen Fehlversuchen gesperrt. Bitte fordern"
        " Sie einen Brief mit Freischaltcode an.",
    )
