"""Who may use the console (OPS-1): operators only.

A token signed by identity (its JWKS) is an operator's when its audience is the operator
audience, it says `role: operator`, and it was issued after a second factor. A valid token
that is not (a customer's, audience `portal`) is refused with 403; anything else is 401.
The token itself is verified by servicekit's `TokenVerifier`, accepting both audiences.
"""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.auth import KeySource, Principal, TokenVerifier
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
        self._tokens = TokenVerifier(
            keys, clock, {operator_audience, customer_audience}, issuer, leeway_seconds
        )
        self._operator_audience = operator_audience

    async def verify(self, token: str) -> Operator:
        """The operator; raises Unauthenticated (401) or NotAnOperator (403)."""
        principal = await self._tokens.verify(token)
        if not self._is_operator(principal):
            raise NotAnOperator("the console is for operators only")
        return Operator(principal.customer_id, principal.username or principal.customer_id)

    def _is_operator(self, principal: Principal) -> bool:
        return (
            self._operator_audience in principal.audiences
            and principal.role == OPERATOR_ROLE
            and principal.has_second_factor
        )
