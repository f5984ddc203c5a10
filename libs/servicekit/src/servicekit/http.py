"""FastAPI wiring every service shares: RFC 9457 problems, request ids, auth, health, metrics."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicekit.auth import Principal, ServiceCredentials, TokenVerifier, Unauthenticated

PROBLEM_JSON = "application/problem+json"
REQUEST_ID = "X-Request-ID"

ReadinessCheck = Callable[[], Awaitable[None]]


class Problem(Exception):
    """An RFC 9457 problem. `detail` is shown to customers, so it is German there."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str = "about:blank",
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.extensions = dict(extensions or {})


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {"type": problem.type, "title": problem.title, "status": problem.status}
    if problem.detail:
        body["detail"] = problem.detail
    body["instance"] = request.url.path
    body.update(problem.extensions)
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(request, Problem(exc.status_code, str(exc.detail)))


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    problem = Problem(
        422,
        "Invalid request",
        "Die Anfrage ist unvollständig oder fehlerhaft.",
        type_="urn:portal:problem:validation",
        extensions={"errors": errors},
    )
    return problem_response(request, problem)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    structlog.get_logger(__name__).exception("unhandled_error", path=request.url.path)
    problem = Problem(500, "Internal error", "Es ist ein technischer Fehler aufgetreten.")
    return problem_response(request, problem)


def create_app(
    title: str, readiness: list[ReadinessCheck] | None = None, version: str = "0.1.0"
) -> FastAPI:
    app = FastAPI(title=title, version=version)
    app.state.readiness = readiness or []
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[..., Any]) -> Response:
        rid = request.headers.get(REQUEST_ID) or str(uuid.uuid4())
        request.state.request_id = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            response: Response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        response.headers[REQUEST_ID] = rid
        return response

    @app.get("/health/live", tags=["operations"])
    async def live() -> dict[str, str]:
        return {"status": "up"}

    @app.get("/health/ready", tags=["operations"])
    async def ready(request: Request) -> Response:
        failures = []
        for check in request.app.state.readiness:
            try:
                await check()
            except Exception as exc:
                failures.append(f"{getattr(check, '__name__', 'check')}: {type(exc).__name__}")
        status = 503 if failures else 200
        body = {"status": "down" if failures else "up", "failures": failures}
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "Unauthorized", "Bitte melden Sie sich an.")
    return token


async def customer_principal(request: Request) -> Principal:
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        return await verifier.verify(_bearer(request))
    except Unauthenticated:
        raise Problem(401, "Unauthorized", "Bitte melden Sie sich erneut an.") from None


async def internal_caller(request: Request) -> str:
    credentials: ServiceCredentials = request.app.state.service_credentials
    try:
        return credentials.verify(request.headers.get("Authorization"))
    except Unauthenticated as exc:
        raise Problem(401, "Unauthorized", str(exc)) from None


CurrentCustomer = Annotated[Principal, Depends(customer_principal)]
InternalCaller = Annotated[str, Depends(internal_caller)]
