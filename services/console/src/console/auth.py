"""Who may use the console (OPS-1): operators only.

A token signed by identity (its JWKS) is an operator's when its audience is the operator
audience, it says `role: operator`, and it was issued after a second factor. A valid token
that is not (a customer's, audience `portal`) is refused with 403; anything else is 401.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from servicekit.auth import ALGORITHMS, SECOND_FACTOR_METHODS, KeySource, Unauthenticated
from servicekit.clock import Clock

OPERATOR_ROLE = "operator"


class NotAnOperator(Exception):
    """A valid token, but not an operator's with a second factor (403)."""


@dataclass(frozen=True, slots=True)
class Operator:
    operator_id: str
    username: str

    @property
    def name(self) -> str:
        """How replays and lookups record who did them."""
        return f"{self.username} ({self.operator_id})"


class _Claims(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: StrictStr = Field(min_length=1, max_length=200)
    exp: int
    aud: StrictStr | list[StrictStr]
    role: StrictStr | None = None
    amr: list[StrictStr] = Field(default_factory=list)
    preferred_username: StrictStr | None = Field(default=None, max_length=200)


class OperatorVerifier:
    def __init__(
        self,
        keys: KeySource,
        clock: Clock,
        operator_audience: str,
        customer_audience: str,
        issuer: str,
        leeway_seconds: int = 30,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._audiences = [operator_audience, customer_audience]
        self._operator_audience = operator_audience
        self._issuer = issuer
        self._leeway = leeway_seconds

    async def verify(self, token: str) -> Operator:
        """The operator; raises Unauthenticated (401) or NotAnOperator (403)."""
        try:
            header = jwt.get_unverified_header(token)
            key = await self._keys.key(str(header.get("kid", "")))
            raw = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self._audiences,
                issuer=self._issuer,
                options={"verify_exp": False, "require": ["sub", "exp"]},
            )
            claims = _Claims.model_validate(raw)
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthenticated("invalid token") from exc
        if claims.exp + self._leeway < self._clock.now().timestamp():
            raise Unauthenticated("token expired")
        audiences = [claims.aud] if isinstance(claims.aud, str) else claims.aud
        if (
            self._operator_audience not in audiences
            or claims.role != OPERATOR_ROLE
            or not set(claims.amr) & SECOND_FACTOR_METHODS
        ):
            raise NotAnOperator("the console is for operators only")
        return Operator(claims.sub, claims.preferred_username or claims.sub)
