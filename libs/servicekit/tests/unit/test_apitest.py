"""The schemathesis helper finds what an app does that its OpenAPI document does not promise."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from servicekit.apitest import (
    ApiConformanceError,
    ApiFailure,
    api_failures,
    assert_api_conforms,
)
from servicekit.http import Problem, create_app, problems
from servicekit.logging import configure_logging

FAST = {"max_examples": 8}


class Thing(BaseModel):
    id: int
    name: str


def things_app(*, broken: bool) -> FastAPI:
    app = create_app("things")

    @app.get("/things/{thing_id}", response_model=Thing, responses=problems(404))
    async def thing(thing_id: int, name: str = "x") -> Thing:
        if thing_id < 0:
            raise Problem(404, "unknown_thing")
        if broken and thing_id > 5:
            raise KeyError(name)  # the defect: an unexpected exception, a 500
        return Thing(id=thing_id, name=name)

    @app.get("/shapes/{shape_id}", response_model=Thing)
    async def shape(shape_id: int) -> JSONResponse:
        body = {"id": "not a number"} if broken else {"id": shape_id, "name": "ok"}
        return JSONResponse(body)

    @app.get("/conflicts", responses=problems(409))
    async def conflicts() -> dict[str, str]:
        if broken:
            raise Problem(418, "teapot")  # undocumented status
        raise Problem(409, "conflict")

    return app


@pytest.fixture(scope="module")
def broken_app_failures() -> list[ApiFailure]:
    configure_logging("apitest")  # JSON lines: the default console renderer is slow
    return api_failures(things_app(broken=True), **FAST)  # type: ignore[arg-type]


def test_a_route_that_answers_500_is_reported_with_a_reproduction(
    broken_app_failures: list[ApiFailure],
) -> None:
    server_errors = [f for f in broken_app_failures if f.title == "Server error"]
    assert [f.operation for f in server_errors] == ["GET /things/{thing_id}"]
    assert "curl -X GET" in server_errors[0].reproduce
    assert "500" in server_errors[0].message


def test_a_body_off_its_schema_and_an_undocumented_status_are_reported(
    broken_app_failures: list[ApiFailure],
) -> None:
    failures = {(f.operation, f.title) for f in broken_app_failures}
    assert failures == {
        ("GET /things/{thing_id}", "Server error"),
        ("GET /shapes/{shape_id}", "Response violates schema"),
        ("GET /conflicts", "Undocumented status code"),
    }


def test_the_failures_read_as_one_list(broken_app_failures: list[ApiFailure]) -> None:
    text = str(ApiConformanceError(broken_app_failures))
    assert text.startswith("3 API failure(s):\n- GET ")
    assert "- GET /things/{thing_id}: Server error" in text


def test_the_fixed_app_passes() -> None:
    configure_logging("apitest")
    assert_api_conforms(things_app(broken=False), **FAST)


def test_every_request_carries_the_headers_the_auth_provider_gives() -> None:
    app = create_app("secured")
    seen: list[str | None] = []

    @app.get("/me")
    async def me(request_id: str | None = None) -> dict[str, str]:
        return {}

    @app.middleware("http")
    async def record(request, call_next):  # type: ignore[no-untyped-def]
        if request.url.path == "/me":
            seen.append(request.headers.get("authorization"))
        return await call_next(request)

    asked: set[tuple[str, str]] = set()

    def auth(method: str, path: str) -> dict[str, str]:
        asked.add((method, path))
        return {"Authorization": "Bearer for-" + path}

    assert_api_conforms(app, auth=auth, include=lambda m, p: p == "/me", **FAST)
    assert asked == {("GET", "/me")}
    assert seen
    assert set(seen) == {"Bearer for-/me"}


def test_a_document_without_operations_is_a_failure_not_a_pass() -> None:
    failures = api_failures(things_app(broken=False), include=lambda method, path: False)
    assert [f.title for f in failures] == ["Nothing tested"]
