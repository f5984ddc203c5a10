"""OPS-1: operator accounts - second factor mandatory, tokens only for the console."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from identity import commands as c
from identity.domain.model import Outcome
from identity.domain.operators import matching_step, provisioning_uri, time_step, totp
from identity.domain.rules import IdentityError, Reason
from identity.handlers import Refused
from identity_world import PASSWORD, World
from servicekit.auth import StaticKeys, TokenVerifier, Unauthenticated

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


async def _operator(world: World, username: str = "ops-anna") -> Outcome:
    created = await world.run(
        world.identity.create_operator, c.CreateOperator(username, PASSWORD, SECRET)
    )
    assert isinstance(created, Outcome)
    return created


async def _login(world: World, otp: str, password: str = PASSWORD) -> Outcome | Refused:
    result: Outcome | Refused = await world.run(
        world.identity.operator_login, c.OperatorLogin("ops-anna", password, otp, "10.0.0.1")
    )
    return result


def _code(world: World, shift: int = 0) -> str:
    return totp(SECRET, time_step(world.clock.now()) + shift)


async def _verifier(world: World, audience: str) -> TokenVerifier:
    jwks = await world.run(world.identity.published_keys, c.PublishedKeys())
    return TokenVerifier(StaticKeys(jwks.data), world.clock, audience, "portal-identity")


def test_totp_matches_the_rfc_6238_test_vector() -> None:
    # RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits) -> last 6 digits.
    rfc_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"
    assert totp(rfc_secret, 1) == "287082"


async def test_ops1_operator_logs_in_with_password_and_one_time_password(world: World) -> None:
    created = await _operator(world)
    assert created.data["totp_secret"] == SECRET
    result = await _login(world, _code(world))
    assert isinstance(result, Outcome), result
    claims: dict[str, Any] = jwt.decode(
        str(result.data["access_token"]), options={"verify_signature": False}
    )
    assert claims["role"] == "operator"
    assert claims["aud"] == "portal-operators"
    assert "mfa" in claims["amr"]
    assert "otp" in claims["amr"]
    assert claims["preferred_username"] == "ops-anna"
    principal = await (await _verifier(world, "portal-operators")).verify(
        str(result.data["access_token"])
    )
    assert principal.has_second_factor


async def test_ops1_operator_token_is_refused_by_customer_routes(world: World) -> None:
    await _operator(world)
    result = await _login(world, _code(world))
    assert isinstance(result, Outcome)
    with pytest.raises(Unauthenticated):
        await (await _verifier(world, "portal")).verify(str(result.data["access_token"]))


async def test_ops1_no_token_without_the_second_factor(world: World) -> None:
    await _operator(world)
    for otp in ("000000", ""):
        refused = await _login(world, otp or "123456")
        assert isinstance(refused, Refused)
        assert refused.error.reason is Reason.LOGIN_FAILED
    wrong_password = await _login(world, _code(world), password="Falsches-Passwort-123")
    assert isinstance(wrong_password, Refused)


async def test_ops1_a_used_one_time_password_is_spent(world: World) -> None:
    await _operator(world)
    code = _code(world)
    assert isinstance(await _login(world, code), Outcome)
    again = await _login(world, code)
    assert isinstance(again, Refused)


async def test_ops1_operator_logins_are_throttled(world: World) -> None:
    await _operator(world)
    for _ in range(4):
        await _login(world, "000000")
    throttled = await _login(world, _code(world))
    assert isinstance(throttled, Refused)
    assert throttled.error.reason is Reason.THROTTLED


async def test_ops1_operator_usernames_are_unique_and_passwords_strong(world: World) -> None:
    await _operator(world)
    with pytest.raises(IdentityError) as taken:
        await _operator(world, "OPS-ANNA")
    assert taken.value.reason is Reason.CONFLICT
    with pytest.raises(IdentityError) as weak:
        await world.run(world.identity.create_operator, c.CreateOperator("ops-ben", "password"))
    assert weak.value.reason is Reason.WEAK_PASSWORD


async def test_ops1_customer_login_does_not_know_operators(world: World) -> None:
    await _operator(world)
    refused = await world.login("ops-anna")
    assert isinstance(refused, Refused)


def test_one_time_password_window_and_uri() -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    now = time_step(at)
    assert matching_step(SECRET, totp(SECRET, now - 1), at, 0) == now - 1
    assert matching_step(SECRET, totp(SECRET, now - 2), at, 0) is None
    assert matching_step(SECRET, totp(SECRET, now), at, now) is None
    assert provisioning_uri(SECRET, "ops-anna").startswith("otpauth://totp/")
