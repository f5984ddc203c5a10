"""FastAPI wiring every service shares: RFC 9457 problems, request ids, auth, health, metrics.

Every app's OpenAPI document describes its errors: each operation lists the problem
statuses it can answer (422 where it takes input, 400 where it takes a body, 401/403 from
its auth dependencies, 500 always, more through `responses=problems(...)`), all as
`application/problem+json` with the `ProblemDetails` schema.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicekit.auth import Principal, ServiceCredentials, TokenVerifier, Unauthenticated
from servicekit.metrics import LOGGED_ATTRIBUTE, Instrumentation
from servicekit.permissions import Operation, SystemPermissions
from servicekit.settings import ServiceSettings

PROBLEM_JSON = "application/problem+json"
REQUEST_ID = "X-Request-ID"
PROBLEM_SCHEMA_REF = "#/components/schemas/ProblemDetails"
# Set on a dependency: the problem statuses it may answer, documented on every operation
# that depends on it (directly or through other dependencies).
PROBLEM_STATUSES_ATTRIBUTE = "problem_statuses"

ReadinessCheck = Callable[[], Awaitable[None]]
# For `FastAPI(telemetry=...)`: servicekit's `Instrumentation` makes the spans and metrics.
NATIVE_TELEMETRY_OFF: Any = {"tracing": False, "metrics": False, "logs": False}


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


class FieldError(BaseModel):
    field: str = Field(description="Where: `body.amount_cents`, `query.limit`, ...")
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as every error of every portal service is answered."""

    model_config = ConfigDict(extra="allow", title="ProblemDetails")

    type: str = Field(default="about:blank", description="URI reference of the problem type")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str | None = Field(default=None, description="For the user; German for customers")
    instance: str | None = Field(default=None, description="The request path")
    request_id: str | None = Field(default=None, description="Also the X-Request-ID header")
    errors: list[FieldError] | None = Field(default=None, description="Invalid fields (422)")


class Readiness(BaseModel):
    status: str = Field(description="`up` or `down`")
    failures: list[str]


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for further problem statuses a route answers, e.g.
    `@router.get(..., responses=problems(404, 409))`."""
    return {status: _problem_response_doc(status) for status in statuses}


def _problem_response_doc(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
    }


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
    if not getattr(exc, LOGGED_ATTRIBUTE, False):  # Instrumentation logged it in its span
        structlog.get_logger(__name__).exception("unhandled_error", path=request.url.path)
    problem = Problem(500, "Internal error", "Es ist ein technischer Fehler aufgetreten.")
    return problem_response(request, problem)


def create_app(
    title: str,
    readiness: list[ReadinessCheck] | None = None,
    version: str = "0.1.0",
    *,
    instrument: bool = True,
) -> FastAPI:
    """`title` is the service's name: the `service` label of its HTTP metrics. With
    `instrument` (the default; off only to measure its cost), every request gets a SERVER
    span continuing the caller's trace and is counted by route template and status.
    FastAPI's own telemetry stays off (`NATIVE_TELEMETRY_OFF`): its spans would start a
    trace of their own below ours, and record query strings and exception messages."""
    app = FastAPI(title=title, version=version, telemetry=NATIVE_TELEMETRY_OFF)
    _document_problems(app)
    app.state.readiness = readiness or []
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[..., Any]) -> Response:
        rid = request.headers.get(REQUEST_ID) or str(uuid.uuid4())
        request.state.request_id = rid
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            response: Response = await call_next(request)
        finally:
            structlog.contextvars.reset_contextvars(**bound)  # the outer binding, if any
        response.headers[REQUEST_ID] = rid
        return response

    if instrument:  # added last: the outermost, so it sees every answer and its duration
        app.add_middleware(Instrumentation, service=title)

    @app.get("/health/live", tags=["operations"])
    async def live() -> dict[str, str]:
        return {"status": "up"}

    @app.get(
        "/health/ready", tags=["operations"], response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A dependency is down"}},
    )  # fmt: skip
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

    app.add_api_route("/metrics", metrics, include_in_schema=False, tags=["operations"])
    return app


async def metrics() -> Response:
    """Every metric of this process, in Prometheus' text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def metrics_app() -> FastAPI:
    """Only `/metrics` (and `/health/live`): for a process whose main port must not serve
    them, e.g. the gateway, whose main port is the customers' door."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, telemetry=NATIVE_TELEMETRY_OFF)
    app.add_api_route("/metrics", metrics, include_in_schema=False)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "up"}

    return app


def _document_problems(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _add_problems(document, app)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _add_problems(document: dict[str, Any], app: FastAPI) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem_schema.pop("$defs", {}))
    components["ProblemDetails"] = problem_schema
    # Routers added with include_router are entries of their own; FastAPI's iterator gives
    # every route with its effective path, dependencies and flags.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        path_item = document.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            operation = path_item.get(method.lower())
            if operation is not None:
                _add_operation_problems(operation, _dependency_statuses(route.dependant))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in repr(document):
            components.pop(unused, None)


def _add_operation_problems(operation: dict[str, Any], statuses: set[int]) -> None:
    responses = operation.setdefault("responses", {})
    if "parameters" in operation or "requestBody" in operation:
        statuses.add(422)
        responses.pop("422", None)  # FastAPI's HTTPValidationError: not what is answered
    if "requestBody" in operation:
        statuses.add(400)  # a body that is not JSON at all: FastAPI answers 400
    for status in statuses | {500}:
        responses.setdefault(str(status), _problem_response_doc(status))
    operation["responses"] = dict(sorted(responses.items()))


def _dependency_statuses(dependant: Dependant) -> set[int]:
    return {
        status
        for call in _dependency_calls(dependant)
        for status in getattr(call, PROBLEM_STATUSES_ATTRIBUTE, ())
    }


def _dependency_calls(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _dependency_calls(dependency)


def declare_problems(dependency: Any, *statuses: int) -> None:
    """Document `statuses` on every operation depending on `dependency`, e.g. a service's
    own auth dependency: `declare_problems(caller, 401)`."""
    setattr(dependency, PROBLEM_STATUSES_ATTRIBUTE, statuses)


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
    """The calling system, whatever it may call: use `requires(operation)` instead."""
    credentials: ServiceCredentials = request.app.state.service_credentials
    try:
        return credentials.verify(request.headers.get("Authorization"))
    except Unauthenticated as exc:
        raise Problem(401, "Unauthorized", str(exc)) from None


def requires(operation: Operation | str) -> Callable[[Request], Awaitable[str]]:
    """A dependency admitting only internal systems granted `operation`: 401 without valid
    service credentials, 403 when the system may not call it. Yields the system's name:
    `caller: Annotated[str, Depends(requires(Operation.PAYMENTS))]`."""
    needed = Operation(operation)  # an unknown name fails when the route is declared

    async def permitted_caller(request: Request) -> str:
        system = await internal_caller(request)
        if not system_permissions(request.app).allows(system, needed):
            raise Problem(
                403, "Forbidden", f"{system} may not call {needed.value} operations",
                type_="urn:portal:problem:forbidden-operation",
            )  # fmt: skip
        return system

    permitted_caller.__name__ = f"requires_{needed.value}"
    declare_problems(permitted_caller, 401, 403)
    return permitted_caller


def system_permissions(app: FastAPI) -> SystemPermissions:
    """`app.state.system_permissions`, or else the PORTAL_SYSTEM_OPERATIONS setting."""
    permissions: SystemPermissions | None = getattr(app.state, "system_permissions", None)
    if permissions is None:
        permissions = SystemPermissions(ServiceSettings().system_operations)
        app.state.system_permissions = permissions
    return permissions


declare_problems(customer_principal, 401)
declare_problems(internal_caller, 401)

CurrentCustomer = Annotated[Principal, Depends(customer_principal)]
# To be replaced route by route with `Depends(requires(Operation.X))` (OWASP API5).
InternalCaller = Annotated[str, Depends(internal_caller)]


def client_address(
    peer: str, forwarded_for: str | None, trusted_proxies: Sequence[str]
) -> tuple[str, list[str]]:
    """(the client's address, the X-Forwarded-For chain as seen here).

    The TCP peer is the client - unless the peer is one of `trusted_proxies` (addresses or
    CIDR networks, e.g. the gateway or a load balancer): then the client is the last
    address of its `X-Forwarded-For` that is not a trusted proxy. Whatever else a client
    writes into the header is not believed (it cannot dodge per-address throttles)."""
    if not trusted_proxies or not _trusted_proxy(peer, trusted_proxies):
        return peer, [peer]
    chain = [a.strip() for a in (forwarded_for or "").split(",") if a.strip()]
    chain.append(peer)
    for address in reversed(chain):
        if not _trusted_proxy(address, trusted_proxies):
            return address, chain
    return chain[0], chain


def _trusted_proxy(address: str, proxies: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for proxy in proxies:
        try:
            if ip in ipaddress.ip_network(proxy, strict=False):
                return True
        except ValueError:
            continue
    return False
