"""Every app's OpenAPI document says which RFC 9457 problems each operation answers, and
the bodies answered are what it says; a malformed credential is a 401, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from jwt import PyJWK
from pydantic import BaseModel
from servicekit.auth import (
    ServiceCredentials,
    StaticKeys,
    TokenVerifier,
    basic_authorization,
    generate_signing_key,
    mint_token,
)
from servicekit.clock import FixedClock
from servicekit.http import (
    PROBLEM_JSON,
    CurrentCustomer,
    InternalCaller,
    Problem,
    ProblemDetails,
    create_app,
    problems,
    requires,
)
from servicekit.permissions import SystemPermissions

NOW = datetime.now(UTC)
PRIVATE, JWKS = generate_signing_key("k1")
SIGNED_WITH_AMR_A_NUMBER = jwt.encode(
    {"sub": "cust-1", "aud": "portal", "iss": "portal-identity", "exp": 2**40, "amr": 2},
    PyJWK(PRIVATE).key,
    algorithm="ES256",
    headers={"kid": "k1"},
)
BASIC_JSON = {
    "Authorization": basic_authorization("collections", "s3cret"),
    "Content-Type": "application/json",
}
PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}


class Body(BaseModel):
    amount_cents: int


def app() -> FastAPI:
    app = create_app("test")
    app.state.token_verifier = TokenVerifier(StaticKeys(JWKS), FixedClock(NOW), "portal")
    app.state.service_credentials = ServiceCredentials(
        {"collections": ServiceCredentials.digest("s3cret")}
    )
    app.state.system_permissions = SystemPermissions({"collections": ["payments"]})

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        return {}

    @app.get("/things/{thing_id}", responses=problems(404, 409))
    async def thing(thing_id: int, customer: CurrentCustomer) -> dict[str, str]:
        raise Problem(404, "unknown_thing", "Unbekannt.")

    @app.post("/internal/payments")
    async def pay(body: Body, caller: Annotated[str, Depends(requires("payments"))]) -> str:
        return caller

    @app.get("/internal/legacy")
    async def legacy(caller: InternalCaller) -> str:
        return caller

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    return app


def operation(path: str, method: str = "get") -> dict[str, Any]:
    op: dict[str, Any] = app().openapi()["paths"][path][method]
    return op


def problem_statuses(op: dict[str, Any]) -> set[int]:
    return {
        int(status)
        for status, response in op["responses"].items()
        if response.get("content", {}).get(PROBLEM_JSON, {}).get("schema") == PROBLEM_REF
    }


def test_every_operation_documents_500_as_a_problem() -> None:
    paths = app().openapi()["paths"]
    for path, item in paths.items():
        for method, op in item.items():
            assert 500 in problem_statuses(op), f"{method} {path}"


def test_the_problem_schema_replaces_fastapis_validation_error_schema() -> None:
    document = app().openapi()
    schemas = document["components"]["schemas"]
    assert "ProblemDetails" in schemas
    assert "HTTPValidationError" not in schemas
    assert "HTTPValidationError" not in repr(document)
    assert set(schemas["ProblemDetails"]["properties"]) >= {
        "type", "title", "status", "detail", "instance", "request_id", "errors",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/plain", "get", {500}),
        ("/health/live", "get", {500}),
        ("/things/{thing_id}", "get", {401, 404, 409, 422, 500}),
        ("/internal/payments", "post", {400, 401, 403, 422, 500}),
        ("/internal/legacy", "get", {401, 500}),
    ],
)
def test_each_operation_documents_the_problems_it_can_answer(
    path: str, method: str, expected: set[int]
) -> None:
    assert problem_statuses(operation(path, method)) == expected


def client() -> TestClient:
    return TestClient(app(), raise_server_exceptions=False)


def customer_token() -> dict[str, str]:
    token = mint_token(PRIVATE, "cust-1", "portal", NOW + timedelta(minutes=5))
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/things/1", {"headers": customer_token()}, 404),
        ("get", "/things/x", {"headers": customer_token()}, 422),
        ("get", "/things/1", {}, 401),
        ("post", "/internal/payments", {"json": {"amount_cents": 1}}, 401),
        ("get", "/broken", {}, 500),
        ("post", "/internal/payments", {"content": b"\x80\x81", "headers": BASIC_JSON}, 400),
    ],
)
def test_the_problems_answered_match_the_documented_schema(
    method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = client().request(method, path, **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    assert ProblemDetails.model_validate(response.json()).status == status


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer a.b.c",
        "Bearer ....",
        "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOjF9.AAAA",
        "Bearer " + "x" * 10_000,
        "Bearer \u00ff\u00fe",
        "bearer " + customer_token()["Authorization"].split()[1][:-4],
        "Bearer " + SIGNED_WITH_AMR_A_NUMBER,
        "Basic " + "Zm9v",
        "Digest xyz",
        "\u00e4",
    ],
)
def test_a_malformed_authorization_header_is_401_never_500(authorization: str) -> None:
    raw = {"Authorization": authorization.encode("latin-1")}
    response = client().get("/things/1", headers=raw)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON


def test_routes_of_an_included_router_document_their_problems_too() -> None:
    """FastAPI keeps an included router as one entry of its own; its routes still count."""
    router = APIRouter(prefix="/included")

    @router.post("/jobs")
    async def job(body: Body, caller: Annotated[str, Depends(requires("payments"))]) -> str:
        return caller

    application = app()
    application.include_router(router)
    op = application.openapi()["paths"]["/included/jobs"]["post"]

    assert problem_statuses(op) == {400, 401, 403, 422, 500}
