"""Customer tokens (ID-10) and service credentials: every service authorises the same way."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from jwt import PyJWK
from jwt.algorithms import get_default_algorithms
from servicekit.auth import (
    DEFAULT_TOKEN_ISSUER,
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
from servicekit.settings import ServiceSettings

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


async def test_id10_the_principal_carries_amr_role_audiences_and_username() -> None:
    """One Principal for every verifier: identity reads `amr` from it (device binding),
    the console the role, the audience and the operator's name."""
    principal = await verifier().verify(
        signed(VALID | {"amr": ["pwd", "sms"], "role": "operator", "jti": "t-1",
                        "preferred_username": "anna"})
    )  # fmt: skip
    assert principal.amr == ("pwd", "sms")
    assert principal.role == "operator"
    assert principal.audiences == ("portal",)
    assert principal.username == "anna"
    assert principal.token_id == "t-1"
    plain = await verifier().verify(token())
    assert (plain.amr, plain.role, plain.username) == (("pwd",), None, None)


async def test_a_verifier_for_a_set_of_audiences_accepts_a_token_naming_any_of_them() -> None:
    both = TokenVerifier(StaticKeys(JWKS), FixedClock(NOW), {"portal", "portal-operators"})
    operators = await both.verify(signed(VALID | {"aud": "portal-operators"}))
    assert operators.audiences == ("portal-operators",)
    listed = await both.verify(signed(VALID | {"aud": ["elsewhere", "portal"]}))
    assert listed.audiences == ("elsewhere", "portal")
    with pytest.raises(Unauthenticated):
        await both.verify(signed(VALID | {"aud": "another-app"}))
    with pytest.raises(ValueError, match="at least one audience"):
        TokenVerifier(StaticKeys(JWKS), FixedClock(NOW), set())


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


def signed(claims: object, **header: object) -> str:
    """A token signed by the right key whatever its claims: the identity service's bug or a
    stolen key's misuse must still not crash a service."""
    parts = [
        _b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "k1"} | header)),
        _b64(json.dumps(claims)),
    ]
    signature = ES256.sign(".".join(parts).encode(), PyJWK(PRIVATE).key)
    return ".".join([*parts, base64.urlsafe_b64encode(signature).decode().rstrip("=")])


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


ES256 = get_default_algorithms()["ES256"]
VALID = {
    "sub": "cust-1",
    "aud": "portal",
    "iss": DEFAULT_TOKEN_ISSUER,
    "exp": int((NOW + timedelta(minutes=5)).timestamp()),
}


async def test_a_well_formed_raw_token_passes_so_the_malformed_cases_prove_something() -> None:
    assert (await verifier().verify(signed(VALID))).customer_id == "cust-1"


@pytest.mark.parametrize(
    "claims",
    [
        VALID | {"exp": "tomorrow"},
        VALID | {"exp": str(VALID["exp"])},
        VALID | {"exp": 10**400},
        VALID | {"exp": True},
        VALID | {"exp": None},
        VALID | {"nbf": "now"},
        VALID | {"amr": 2},
        VALID | {"amr": "sms"},
        VALID | {"amr": [1, 2]},
        VALID | {"sub": 42},
        VALID | {"sub": {"id": "cust-1"}},
        VALID | {"sub": ""},
        VALID | {"sub": "cust\u00001"},
        VALID | {"acr": ["password"]},
        VALID | {"acr": 2},
        VALID | {"jti": 7},
        VALID | {"aud": 5},
        VALID | {"iss": ["portal-identity"]},
        VALID | {"role": ["operator"]},
        VALID | {"role": "op\u0000erator"},
        VALID | {"preferred_username": 7},
        *({k: v for k, v in VALID.items() if k != missing} for missing in VALID),
        ["not", "an", "object"],
        "a string",
    ],
    ids=lambda c: json.dumps(
        {k: v for k, v in c.items() if VALID.get(k) != v} | {"-": sorted(VALID.keys() - c.keys())}
        if isinstance(c, dict)
        else c
    ),
)
async def test_a_signed_token_with_malformed_claims_is_unauthenticated_not_a_crash(
    claims: object,
) -> None:
    with pytest.raises(Unauthenticated):
        await verifier().verify(signed(claims))


async def test_a_signed_token_with_exp_nan_is_refused_instead_of_never_expiring() -> None:
    forever = signed(VALID | {"exp": float("nan")})
    with pytest.raises(Unauthenticated):
        await verifier().verify(forever)


@pytest.mark.parametrize(
    "header", [{"kid": 1}, {"kid": {"x": 1}}, {"alg": "none"}, {"crit": ["exp"]}]
)
async def test_a_token_with_a_malformed_header_is_unauthenticated(header: dict[str, Any]) -> None:
    with pytest.raises(Unauthenticated):
        await verifier().verify(signed(VALID, **header))


async def test_the_issuer_is_always_checked_even_when_no_issuer_is_configured() -> None:
    with pytest.raises(Unauthenticated):
        await verifier().verify(token(issuer=None))
    with pytest.raises(Unauthenticated):
        await verifier().verify(token(issuer="https://evil.example"))


async def test_a_configured_issuer_replaces_the_default() -> None:
    custom = TokenVerifier(StaticKeys(JWKS), FixedClock(NOW), "portal", "https://id.example")
    assert (await custom.verify(token(issuer="https://id.example"))).customer_id == "cust-1"
    with pytest.raises(Unauthenticated):
        await custom.verify(token())


def test_tokens_minted_for_development_carry_the_issuer_services_check_by_default() -> None:
    claims = jwt.decode(token(), options={"verify_signature": False})
    assert claims["iss"] == ServiceSettings().token_issuer == DEFAULT_TOKEN_ISSUER
