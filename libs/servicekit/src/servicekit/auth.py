"""Who is calling: customer access tokens and service credentials.

Customer tokens are JWTs signed with an asymmetric key (RS256/ES256/EdDSA) published by
the identity service as a JWKS. Audience, issuer and expiry are checked against the
injected clock; the issuer always (`DEFAULT_TOKEN_ISSUER` unless configured, which the
tokens minted here for development and tests carry too). A token whose claims do not
have their registered types is refused like a forged one. `amr` says how the session
was authenticated (ID-10), which services enforce (DOC-3); `role` and the token's
audiences let a verifier that accepts several audiences (the console: operators' and
customers') tell whose token it is. Internal endpoints take
service credentials instead: HTTP Basic with a system name and a secret whose SHA-256
digest is configured (the secret itself is never stored in configuration).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol

import httpx
import jwt
from jwt import PyJWK
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, StrictInt, StrictStr
from pydantic import ValidationError as ClaimsError

from servicekit.clock import Clock

ALGORITHMS = ["RS256", "ES256", "EdDSA"]
SECOND_FACTOR_METHODS = frozenset({"sms", "otp", "mfa"})
DEFAULT_TOKEN_ISSUER = "portal-identity"  # noqa: S105 - an issuer, not a secret
_REQUIRED_CLAIMS = ["sub", "exp", "aud", "iss"]
# No control characters: the subject becomes a customer id in SQL parameters and logs.
_PRINTABLE = r"^[^\u0000-\u001f\u007f-\u009f]+$"


class AuthLevel(StrEnum):
    PASSWORD = "password"  # noqa: S105 - a level name, not a secret
    PASSWORD_AND_SMS = "password+sms"  # noqa: S105


class Unauthenticated(Exception):
    """No valid credentials; the message is safe to show (it never says why in detail)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token names: `customer_id` is its subject (an operator's id in an
    operator's token), with how the session was authenticated (`amr`, ID-10), its `role`
    (identity's operator tokens say `operator`), the audiences it was issued for and the
    `preferred_username` when the token carries one."""

    customer_id: str
    auth_level: AuthLevel
    token_id: str | None = None
    amr: tuple[str, ...] = ()
    role: str | None = None
    audiences: tuple[str, ...] = ()
    username: str | None = None

    @property
    def has_second_factor(self) -> bool:
        return self.auth_level is AuthLevel.PASSWORD_AND_SMS


_YEAR_9999 = 253_402_300_799
# Seconds since the epoch (RFC 7519 NumericDate), within what a datetime can represent.
NumericDate = Annotated[
    StrictInt | Annotated[FiniteFloat, Field(strict=True)], Field(ge=0, le=_YEAR_9999)
]


class _Claims(BaseModel):
    """The claims this service reads, with the types RFC 7519 and OIDC give them. A token
    signed by the right key but shaped otherwise is as invalid as a forged one."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: StrictStr = Field(min_length=1, max_length=200, pattern=_PRINTABLE)
    exp: NumericDate
    nbf: NumericDate | None = None
    aud: StrictStr | list[StrictStr]
    amr: list[StrictStr] = Field(default_factory=list)
    acr: StrictStr | None = None
    jti: StrictStr | None = Field(default=None, max_length=200, pattern=_PRINTABLE)
    role: StrictStr | None = Field(default=None, max_length=100, pattern=_PRINTABLE)
    preferred_username: StrictStr | None = Field(default=None, max_length=200, pattern=_PRINTABLE)


class KeySource(Protocol):
    async def key(self, kid: str) -> PyJWK: ...


class StaticKeys:
    """Keys given up front: for tests, and for deployments that pin their keys."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = {k["kid"]: PyJWK(k) for k in jwks["keys"]}

    async def key(self, kid: str) -> PyJWK:
        try:
            return self._keys[kid]
        except KeyError:
            raise Unauthenticated("unknown signing key") from None


class JwksUrlKeys:
    """Keys fetched from a JWKS URL, cached, refetched when an unknown `kid` appears
    (key rotation) but at most once per `min_refresh_seconds`."""

    def __init__(
        self, url: str, client: httpx.AsyncClient, clock: Clock, min_refresh_seconds: int = 60
    ) -> None:
        self._url = url
        self._client = client
        self._clock = clock
        self._min_refresh = min_refresh_seconds
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: datetime | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> PyJWK:
        if kid not in self._keys:
            async with self._lock:
                if kid not in self._keys and self._may_refresh():
                    await self._refresh()
        try:
            return self._keys[kid]
        except KeyError:
            raise Unauthenticated("unknown signing key") from None

    def _may_refresh(self) -> bool:
        if self._fetched_at is None:
            return True
        return (self._clock.now() - self._fetched_at).total_seconds() >= self._min_refresh

    async def _refresh(self) -> None:
        response = await self._client.get(self._url, timeout=5.0)
        response.raise_for_status()
        self._keys = {k["kid"]: PyJWK(k) for k in response.json()["keys"] if "kid" in k}
        self._fetched_at = self._clock.now()


class TokenVerifier:
    """Verifies customer (and operator) tokens. `audience` is one audience or a set of
    them: a token is accepted when it names at least one; `Principal.audiences` says
    which it names."""

    def __init__(
        self,
        keys: KeySource,
        clock: Clock,
        audience: str | Collection[str],
        issuer: str = DEFAULT_TOKEN_ISSUER,
        leeway_seconds: int = 30,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._audience: str | list[str] = (
            audience if isinstance(audience, str) else sorted(audience)
        )
        if not self._audience:
            raise ValueError("a token verifier needs at least one audience")
        self._issuer = issuer
        self._leeway = leeway_seconds

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            key = await self._keys.key(str(header.get("kid", "")))
            claims = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "require": _REQUIRED_CLAIMS},
            )  # fmt: skip
            checked = _Claims.model_validate(claims)
        except (jwt.PyJWTError, ClaimsError) as exc:
            raise Unauthenticated("invalid token") from exc
        self._check_times(checked)
        level = (
            AuthLevel.PASSWORD_AND_SMS
            if set(checked.amr) & SECOND_FACTOR_METHODS
            else AuthLevel.PASSWORD
        )
        audiences = (checked.aud,) if isinstance(checked.aud, str) else tuple(checked.aud)
        return Principal(
            checked.sub, level, checked.jti, amr=tuple(checked.amr), role=checked.role,
            audiences=audiences, username=checked.preferred_username,
        )  # fmt: skip

    def _check_times(self, claims: _Claims) -> None:
        now = self._clock.now().timestamp()
        if claims.exp + self._leeway < now:
            raise Unauthenticated("token expired")
        if claims.nbf is not None and claims.nbf - self._leeway > now:
            raise Unauthenticated("token not yet valid")


class ServiceCredentials:
    """Internal callers: `Authorization: Basic base64(system:secret)`."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        self._digests = {system: digest.lower() for system, digest in digests.items()}

    @staticmethod
    def digest(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def verify(self, authorization: str | None) -> str:
        """The calling system's name; raises Unauthenticated."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise Unauthenticated("service credentials required")
        try:
            system, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise Unauthenticated("malformed service credentials") from None
        expected = self._digests.get(system, "0" * 64)
        if not hmac.compare_digest(expected, self.digest(secret)) or system not in self._digests:
            raise Unauthenticated("invalid service credentials")
        return system


def basic_authorization(system: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{system}:{secret}".encode()).decode()


def mint_token(
    private_jwk: Mapping[str, Any],
    subject: str,
    audience: str,
    expires_at: datetime,
    *,
    methods: tuple[str, ...] = ("pwd",),
    issuer: str | None = DEFAULT_TOKEN_ISSUER,
) -> str:
    """Sign a customer token (tests, and the identity service until it has its own).
    `issuer=None` leaves `iss` out, which every verifier refuses."""
    key = PyJWK(dict(private_jwk))
    claims: dict[str, Any] = {
        "sub": subject,
        "aud": audience,
        "exp": int(expires_at.astimezone(UTC).timestamp()),
        "amr": list(methods),
    }
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(
        claims, key.key, algorithm=private_jwk.get("alg", "ES256"),
        headers={"kid": private_jwk["kid"]},
    )  # fmt: skip


def generate_signing_key(kid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A fresh ES256 key pair as (private JWK, public JWKS)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    private = ec.generate_private_key(ec.SECP256R1())
    private_jwk = json.loads(ECAlgorithm.to_jwk(private)) | {"kid": kid, "alg": "ES256"}
    public_jwk = json.loads(ECAlgorithm.to_jwk(private.public_key())) | {
        "kid": kid,
        "alg": "ES256",
        "use": "sig",
    }
    return private_jwk, {"keys": [public_jwk]}
