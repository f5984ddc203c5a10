"""Customer tokens (ID-10) and service credentials: every service authorises the same way."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from servicekit.auth import (
    AuthLevel,
    JwksUrlKeys,
    ServiceCredentials,
    StaticKeys,
    TokenVerifier,
    Unauthenticated,
    basic_authorization,
    generate_signing_key,
    mint_token,
)
from servicekit.clock import FixedClock

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
PRIVATE, JWKS = generate_signing_key("k1")


def verifier(keys: object = None, clock: FixedClock | None = None) -> TokenVerifier:
    return TokenVerifier(keys or StaticKeys(JWKS), clock or FixedClock(NOW), "portal")  # type: ignore[arg-type]


def token(**overrides: object) -> str:
    options: dict[str, object] = {"expires_at": NOW + timedelta(minutes=5)} | overrides
    return mint_token(PRIVATE, "cust-1", str(options.pop("audience", "portal")), **options)  # type: ignore[arg-type]


async def test_id10_a_password_login_token_says_password_only() -> None:
    principal = await verifier().verify(token())
    assert principal.customer_id == "cust-1"
    assert principal.auth_level is AuthLevel.PASSWORD
    assert not principal.has_second_factor


async def test_id10_a_token_after_the_sms_code_carries_the_second_factor() -> None:
    principal = await verifier().verify(token(methods=("pwd", "sms")))
    assert principal.auth_level is AuthLevel.PASSWORD_AND_SMS


async def test_an_expired_token_is_refused_by_the_injected_clock() -> None:
    clock = FixedClock(NOW + timedelta(minutes=6))
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier(clock=clock).verify(token())


async def test_a_token_for_another_audience_is_refused() -> None:
    with pytest.raises(Unauthenticated):
        await verifier().verify(token(audience="another-app"))


async def test_a_token_signed_with_an_unknown_key_is_refused() -> None:
    stranger, _ = generate_signing_key("k1")
    forged = mint_token(stranger, "cust-1", "portal", NOW + timedelta(minutes=5))
    with pytest.raises(Unauthenticated):
        await verifier().verify(forged)


async def test_garbage_is_refused_without_an_exception_leaking() -> None:
    with pytest.raises(Unauthenticated):
        await verifier().verify("not-a-jwt")


async def test_keys_are_fetched_from_the_jwks_url_and_refetched_on_rotation() -> None:
    rotated_private, rotated_jwks = generate_signing_key("k2")
    served = [JWKS]
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=served[-1])

    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = JwksUrlKeys("https://identity/jwks", client, clock, min_refresh_seconds=60)
        assert (await verifier(keys, clock).verify(token())).customer_id == "cust-1"
        served.append(rotated_jwks)
        clock.advance(timedelta(seconds=61))
        rotated = mint_token(rotated_private, "cust-2", "portal", NOW + timedelta(minutes=5))
        assert (await verifier(keys, clock).verify(rotated)).customer_id == "cust-2"
    assert len(requests) == 2


def test_service_credentials_name_the_calling_system() -> None:
    credentials = ServiceCredentials({"collections": ServiceCredentials.digest("s3cret")})
    assert credentials.verify(basic_authorization("collections", "s3cret")) == "collections"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer abc",
        basic_authorization("collections", "wrong"),
        basic_authorization("unknown", "s3cret"),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic ###",
    ],
)
def test_wrong_service_credentials_are_refused(header: str | None) -> None:
    credentials = ServiceCredentials({"collections": ServiceCredentials.digest("s3cret")})
    with pytest.raises(Unauthenticated):
        credentials.verify(header)
