"""GW-1: the gateway's HTTP app in-process, its upstreams ASGI apps (or transports that
fail as a network does): routing, headers, tokens, limits, sizes, problems."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from gateway.adapters.upstreams import skip_sniffio_lookups
from gateway_world import (
    bearer,
    forged_token,
    gateway_world,
    hs256_with_public_key,
    token,
    unsigned_token,
)

PROBLEM = "application/problem+json"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_gw1_a_request_reaches_its_upstream_with_path_query_and_body() -> None:
    async with gateway_world() as world:
        answer = await world.http.post(
            "/contracts/echo/a%20b?x=1&y=%C3%BC", content=b"hello", headers=bearer(token())
        )
        assert answer.status_code == 200
        echoed = answer.json()
        assert echoed["upstream"] == "contracts"
        assert (echoed["path"], echoed["query"], echoed["body"]) == (
            "/contracts/echo/a b", "x=1&y=%C3%BC", "hello",
        )  # fmt: skip
        loyalty = await world.http.get("/loyalty/echo/z", headers=bearer(token()))
        assert loyalty.json()["upstream"] == "loyalty"


async def test_gw1_services_still_get_the_token_and_verify_it_themselves() -> None:
    async with gateway_world() as world:
        answer = await world.http.get("/contracts/me", headers=bearer(token("anna")))
        assert answer.json() == {"customer": "anna"}
        echoed = (await world.http.get("/contracts/echo/x", headers=bearer(token()))).json()
        assert echoed["headers"]["authorization"].startswith("Bearer ")


async def test_gw1_hop_by_hop_headers_are_stripped_and_x_forwarded_for_set() -> None:
    async with gateway_world(client="198.51.100.23") as world:
        answer = await world.http.get(
            "/contracts/echo/x",
            headers=bearer(token())
            | {"X-Forwarded-For": "6.6.6.6", "Connection": "X-Hop", "X-Hop": "1", "TE": "trailers"},
        )
        sent = answer.json()["headers"]
        assert sent["x-forwarded-for"] == "198.51.100.23"
        assert "x-hop" not in sent
        assert "te" not in sent
        assert sent["x-forwarded-host"] == "gateway.test"
        # ... and on the way back: the upstream's Connection and what it names end here.
        assert "x-secret-hop" not in answer.headers
        assert answer.headers["x-upstream"] == "contracts"
        assert answer.headers["set-cookie"] == "a=1"


async def test_gw1_request_ids_are_propagated_or_made_and_always_answered() -> None:
    async with gateway_world() as world:
        given = await world.http.get(
            "/contracts/echo/x", headers=bearer(token()) | {"X-Request-ID": "req-42"}
        )
        assert given.headers["x-request-id"] == "req-42"
        assert given.json()["headers"]["x-request-id"] == "req-42"
        made = await world.http.get("/contracts/echo/x", headers=bearer(token()))
        assert made.json()["headers"]["x-request-id"] == made.headers["x-request-id"]
        refused = await world.http.get("/contracts/echo/x", headers={"X-Request-ID": "r-7"})
        assert refused.headers["x-request-id"] == "r-7"
        assert refused.json()["request_id"] == "r-7"


async def test_gw1_traceparent_continues_the_callers_trace_or_starts_one() -> None:
    async with gateway_world() as world:
        continued = await world.http.get(
            "/contracts/echo/x", headers=bearer(token()) | {"traceparent": TRACEPARENT}
        )
        sent = continued.json()["headers"]["traceparent"]
        version, trace_id, span_id, _ = sent.split("-")
        assert (version, trace_id) == ("00", TRACE_ID)
        assert span_id != "00f067aa0ba902b7", "the gateway's own span is the parent"
        started = await world.http.get(
            "/contracts/echo/x", headers=bearer(token()) | {"traceparent": "garbage"}
        )
        fresh = started.json()["headers"]["traceparent"].split("-")
        assert len(fresh) == 4
        assert fresh[1] != TRACE_ID
        assert int(fresh[1], 16) != 0


@pytest.mark.parametrize(
    "path",
    [
        "/internal/contracts/jobs",
        "/internal/identity/mtans",
        "/metrics",
        "/asyncapi.json",
        "/health/ready/../../internal/contracts/jobs",
        "/contracts/%2e%2e/internal/contracts/jobs",
        "/contracts/..%2Finternal/contracts/jobs",
        "/nowhere",
    ],
)
async def test_gw1_internal_routes_are_not_found_through_the_gateway(path: str) -> None:
    async with gateway_world() as world:
        for method in ("GET", "POST"):
            answer = await world.http.request(method, path, headers=bearer(token()))
            assert_problem(answer, 404)


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer "},
        bearer("not-a-jwt"),
        bearer(token(expires_in=timedelta(minutes=-5))),
        bearer(forged_token()),
        bearer(unsigned_token()),
        bearer(hs256_with_public_key()),
        bearer(token(issuer="someone-else")),
    ],
    ids=["none", "basic", "empty", "garbage", "expired", "forged", "alg-none", "hs256", "iss"],
)
async def test_gw1_requests_without_a_valid_token_are_refused_at_the_gateway(
    credentials: dict[str, str],
) -> None:
    async with gateway_world() as world:
        answer = await world.http.post("/contracts/echo/x", headers=credentials, content=b"x")
        assert_problem(answer, 401)
        assert answer.headers["www-authenticate"] == "Bearer"


async def test_id4_login_registration_and_the_key_set_need_no_token() -> None:
    async with gateway_world() as world:
        login = await world.http.post("/identity/login", json={})
        assert login.status_code == 200
        keys = await world.http.get("/.well-known/jwks.json")
        assert keys.json()["keys"][0]["kid"] == "gateway-test"
        assert_problem(await world.http.get("/identity/me"), 401)


async def test_id4_keys_are_fetched_from_identity_once_and_again_for_an_unknown_kid() -> None:
    async with gateway_world() as world:
        for _ in range(3):
            assert (
                await world.http.get("/identity/me", headers=bearer(token()))
            ).status_code == 200
        identity = world.upstreams["identity"]
        assert identity.state.fetches == 1


async def test_gw1_identity_unreachable_for_keys_is_503_not_401() -> None:
    async with gateway_world(
        transports={"identity": httpx.MockTransport(_refuse_connection)}
    ) as world:
        answer = await world.http.get("/contracts/echo/x", headers=bearer(token()))
        assert_problem(answer, 503)


async def test_gw1_requests_over_the_size_limit_are_413_declared_or_streamed() -> None:
    async with gateway_world(max_request_bytes=1024) as world:
        declared = await world.http.post(
            "/contracts/echo/x", content=b"x" * 1025, headers=bearer(token())
        )
        assert_problem(declared, 413)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 300

        streamed = await world.http.post(
            "/contracts/echo/x", content=chunks(), headers=bearer(token())
        )
        assert_problem(streamed, 413)
        within = await world.http.post(
            "/contracts/echo/x", content=b"z" * 1024, headers=bearer(token())
        )
        assert within.status_code == 200


async def test_gw1_upload_routes_take_larger_bodies_up_to_their_own_limit() -> None:
    async with gateway_world(
        max_request_bytes=1024, max_upload_request_bytes=4096,
        upload_routes=["POST /contracts/echo/*"],
    ) as world:  # fmt: skip
        within = await world.http.post(
            "/contracts/echo/x", content=b"z" * 4096, headers=bearer(token())
        )
        assert within.status_code == 200
        assert len(within.json()["body"]) == 4096

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 1000

        streamed = await world.http.post(
            "/contracts/echo/x", content=chunks(), headers=bearer(token())
        )
        assert_problem(streamed, 413)
        elsewhere = await world.http.post(
            "/contracts/echo/x/y", content=b"z" * 1025, headers=bearer(token())
        )
        assert_problem(elsewhere, 413)


async def test_gw1_too_many_requests_per_address_are_429_with_retry_after() -> None:
    async with gateway_world(rate_limit_per_address="2/minute") as world:
        answers = [
            await world.http.get("/contracts/echo/x", headers=bearer(token())) for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert_problem(answers[-1], 429)
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 60


async def test_gw1_too_many_requests_per_account_are_429_from_any_address() -> None:
    async with gateway_world(rate_limit_per_account="2/minute") as world:
        statuses = [
            (await world.http.get("/contracts/echo/x", headers=bearer(token("anna")))).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        other = await world.http.get("/contracts/echo/x", headers=bearer(token("ben")))
        assert other.status_code == 200


async def test_gw1_login_is_limited_more_strictly_per_address() -> None:
    async with gateway_world(rate_limit_public_per_address="2/minute") as world:
        statuses = [(await world.http.post("/identity/login", json={})).status_code for _ in "abc"]
        assert statuses == [200, 200, 429]


def _refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _time_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def _break(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("server disconnected", request=request)


@pytest.mark.parametrize(
    ("failure", "status"), [(_refuse_connection, 503), (_break, 502), (_time_out, 504)]
)
async def test_gw1_an_upstream_failing_in_transport_is_a_problem(
    failure: httpx.MockTransport, status: int
) -> None:
    async with gateway_world(transports={"loyalty": httpx.MockTransport(failure)}) as world:
        answer = await world.http.get("/loyalty/echo/x", headers=bearer(token()))
        body = assert_problem(answer, status)
        assert body["upstream"] == "loyalty"
        assert (await world.http.get("/contracts/echo/x", headers=bearer(token()))).is_success


async def test_gw1_an_upstream_error_without_a_problem_document_becomes_one() -> None:
    async with gateway_world() as world:
        answer = await world.http.get("/contracts/plain-error", headers=bearer(token()))
        assert_problem(answer, 500)
        upstream_problem = await world.http.get("/contracts/me", headers=bearer("x"))
        assert_problem(upstream_problem, 401)


async def test_gw1_the_gateway_has_its_own_health() -> None:
    async with gateway_world() as world:
        assert (await world.http.get("/health/live")).json() == {"status": "up"}
        assert (await world.http.get("/health/ready")).json()["status"] == "up"


async def test_gw1_the_combined_openapi_is_served() -> None:
    async with gateway_world() as world:
        document = (await world.http.get("/openapi.json")).json()
        assert "/contracts/me" in document["paths"]
        assert "/loyalty/echo/{rest}" in document["paths"]
        assert "/.well-known/jwks.json" in document["paths"]
        assert not any(
            p.startswith(("/internal", "/health", "/metrics")) for p in document["paths"]
        )


async def test_gw1_an_unreadable_key_set_is_503_not_a_crash() -> None:
    broken = httpx.MockTransport(lambda request: httpx.Response(200, content=b"not json"))
    async with gateway_world(transports={"identity": broken}) as world:
        answer = await world.http.get("/contracts/echo/x", headers=bearer(token()))
        assert_problem(answer, 503)


def test_gw1_httpcores_sniffio_question_is_answered_without_searching_sys_path() -> None:
    """bench/gateway.py: each failed `import sniffio` of httpcore searched sys.path again
    (about 0.7 ms, several per proxied request); the gateway marks it absent once."""
    if sys.modules.get("sniffio") is not None or (
        "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is not None
    ):
        pytest.skip("sniffio is installed: httpcore's import succeeds and is cached")
    skip_sniffio_lookups()
    assert sys.modules["sniffio"] is None
    with pytest.raises(ImportError):
        importlib.import_module("sniffio")
