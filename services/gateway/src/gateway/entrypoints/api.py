"""The gateway's HTTP app: every customer request, forwarded (GW-1).

For each request, in this order: request id; rate limit per client address (all
requests, stricter on routes without a token); route (404 for anything not routed,
internal or not canonical); access token (401) and rate limit per account; body size
(413); then the request streams to the upstream and its answer streams back. An upstream
with several instances: the request goes to one of them, and to another one when the
first cannot be connected to, or breaks the exchange and the request may be sent twice -
such a request's body is read into memory first (GW-2, gateway.adapters.balancer). The
gateway's own refusals and an upstream that cannot be reached (503), breaks the exchange
(502) or is too slow (504) are RFC 9457 problems; so is any error an upstream answers
without one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from http import HTTPStatus

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from jwt import PyJWKError
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from servicekit.auth import Unauthenticated
from servicekit.http import PROBLEM_JSON, Problem, client_address, problem_response
from servicekit.logging import get_logger
from servicekit.metrics import (
    LOGGED_ATTRIBUTE,
    ROUTE_TEMPLATE_STATE,
    UNMATCHED_ROUTE,
    instrument_app,
)
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.adapters.ratelimit import Decision, StorageError
from gateway.adapters.upstreams import UpstreamCall
from gateway.bootstrap import Gateway
from gateway.domain import headers as h
from gateway.domain.balancing import may_send_again
from gateway.domain.routing import Route

log = get_logger(__name__)
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("gateway")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class BodyTooLarge(Exception):
    """The request body grew past the limit while it streamed."""


# --------------------------------------------------------------------------- problems


def _problem(request: Request, problem: Problem, headers: dict[str, str] | None = None) -> Response:
    response = problem_response(request, problem)
    response.headers[h.REQUEST_ID_HEADER] = request.state.request_id
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class GatewayProblem(Problem):
    """A problem with response headers (Retry-After)."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str]) -> None:
        super().__init__(status, title, detail, type_=f"urn:portal:problem:gateway-{status}")
        self.headers = headers


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return _problem(request, exc, getattr(exc, "headers", None))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return _problem(request, Problem(exc.status_code, HTTPStatus(exc.status_code).phrase))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    if not getattr(exc, LOGGED_ATTRIBUTE, False):  # the instrumentation logged it already
        log.error("unhandled_error", path=request.url.path, error=repr(exc))
    problem = Problem(500, "Internal error", "Es ist ein technischer Fehler aufgetreten.")
    return _problem(request, problem)


NOT_FOUND = Problem(404, "Not Found", "Diese Adresse gibt es nicht.")


def _too_many(decision: Decision) -> GatewayProblem:
    return GatewayProblem(
        429, "Too Many Requests",
        "Zu viele Anfragen. Bitte versuchen Sie es später erneut.",
        {"Retry-After": str(decision.retry_after_seconds)},
    )  # fmt: skip


def _too_large(limit: int) -> Problem:
    return Problem(
        413, "Content Too Large", f"Die Anfrage ist zu groß (höchstens {limit} Bytes).",
        type_="urn:portal:problem:gateway-413",
    )  # fmt: skip


def _unavailable(what: str) -> Problem:
    return Problem(
        503, "Service Unavailable",
        "Der Dienst ist gerade nicht erreichbar. Bitte versuchen Sie es später erneut.",
        type_="urn:portal:problem:gateway-503", extensions={"upstream": what},
    )  # fmt: skip


def _bad_gateway(what: str) -> Problem:
    return Problem(
        502, "Bad Gateway", "Der Dienst hat fehlerhaft geantwortet.",
        type_="urn:portal:problem:gateway-502", extensions={"upstream": what},
    )  # fmt: skip


def _timeout(what: str) -> Problem:
    return Problem(
        504, "Gateway Timeout", "Der Dienst hat nicht rechtzeitig geantwortet.",
        type_="urn:portal:problem:gateway-504", extensions={"upstream": what},
    )  # fmt: skip


# --------------------------------------------------------------------------- request id


class RequestIdMiddleware:
    """Every answer, the gateway's own ones included, carries the request's id (the
    client's when plausible, else a fresh one); `request.state.request_id` has it, and so
    does the request's `X-Request-ID` for what runs inside (servicekit's instrumentation
    binds it to the logs and the span)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None
        )
        rid = h.request_id(offered)
        scope.setdefault("state", {})["request_id"] = rid
        encoded = rid.encode("latin-1")
        if rid != offered:
            scope["headers"] = [
                *(item for item in scope["headers"] if item[0] != b"x-request-id"),
                (b"x-request-id", encoded),
            ]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                raw.append((b"x-request-id", encoded))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_id)


# --------------------------------------------------------------------------- proxy


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _admit(gateway: Gateway, check: Awaitable[Decision]) -> None:
    try:
        decision = await check
    except StorageError:
        log.error("rate_limit_storage_unavailable")
        raise _unavailable("rate-limits") from None
    if not decision.allowed:
        raise _too_many(decision)


async def _authenticate(gateway: Gateway, request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Unauthorized", "Bitte melden Sie sich an.")
    try:
        principal = await gateway.verifier.verify(token.strip())
    except Unauthenticated:
        raise Problem(401, "Unauthorized", "Bitte melden Sie sich erneut an.") from None
    except (httpx.HTTPError, ValueError, KeyError, PyJWKError):
        # identity unreachable, or its key set unreadable: nobody can be verified now
        log.warning("jwks_unavailable")
        raise _unavailable("identity") from None
    return principal.customer_id


class _LimitedBody:
    """The request body as it streams upstream, refused past `limit` bytes. Whatever the
    transport makes of the exception, `exceeded` says why the exchange ended."""

    def __init__(self, request: Request, limit: int) -> None:
        self._request = request
        self._limit = limit
        self.exceeded = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._request.stream():
            seen += len(chunk)
            if seen > self._limit:
                self.exceeded = True
                raise BodyTooLarge
            yield chunk

    async def read(self) -> bytes:
        """The whole body (within the limit: else 413)."""
        try:
            return b"".join([chunk async for chunk in self])
        except BodyTooLarge:
            raise _too_large(self._limit) from None


def _transport_problem(name: str, exc: Exception) -> Exception:
    if isinstance(exc, httpx.TimeoutException):
        log.warning("upstream_timeout", upstream=name)
        return _timeout(name)
    if isinstance(exc, httpx.ConnectError):
        log.warning("upstream_unreachable", upstream=name)
        return _unavailable(name)
    if isinstance(exc, httpx.TransportError):
        log.warning("upstream_failed", upstream=name, error=type(exc).__name__)
        return _bad_gateway(name)
    return exc


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise Problem(400, "Bad Request", "Ungültige Content-Length.") from None


async def proxy(request: Request) -> Response:
    gateway = _gateway(request)
    settings = gateway.settings
    scope = request.scope
    peer = request.client.host if request.client else "unknown"
    address, chain = client_address(
        peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies
    )
    raw_path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
    route = gateway.routes.resolve(request.method, scope["path"], raw_path)
    _label(request, route)
    await _admit(
        gateway, gateway.limits.admit_address(address, public=bool(route and route.public))
    )
    if route is None:
        raise NOT_FOUND
    if not route.public:
        subject = await _authenticate(gateway, request)
        await _admit(gateway, gateway.limits.admit_account(subject))
    limit = _body_limit(gateway, route)
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    return await _forward(gateway, request, route, raw_path, chain)


def _label(request: Request, route: Route | None) -> None:
    """The route label of the request's metrics: bounded, never the raw path - a public
    route's configured path (login, registration: few, fixed), else the routed prefix."""
    if route is None:
        template = UNMATCHED_ROUTE
    elif route.public:
        template = request.scope["path"].rstrip("/") or "/"
    else:
        template = route.prefix
    request.scope["state"][ROUTE_TEMPLATE_STATE] = template


def _body_limit(gateway: Gateway, route: Route) -> int:
    settings = gateway.settings
    return settings.max_upload_request_bytes if route.upload else settings.max_request_bytes


async def _forward(
    gateway: Gateway, request: Request, route: Route, raw_path: str, chain: list[str]
) -> Response:
    client = gateway.clients[route.upstream.name]
    query = request.scope.get("query_string", b"").decode("latin-1")
    carrier: dict[str, str] = {}
    # A child of the request's SERVER span (servicekit's instrumentation continued the
    # caller's trace): the upstream's own SERVER span hangs below this one.
    with _tracer.start_as_current_span(f"{request.method} {route.prefix}", kind=SpanKind.CLIENT):
        _PROPAGATOR.inject(carrier)
    headers = h.upstream_request_headers(
        request.headers.items(), forwarded_for=chain, proto=request.url.scheme,
        host=request.headers.get("host"), rid=request.state.request_id, trace=carrier,
    )  # fmt: skip
    has_body = request.method not in {"GET", "HEAD", "OPTIONS"} or (
        "content-length" in request.headers or "transfer-encoding" in request.headers
    )
    limit = _body_limit(gateway, route)
    body = _LimitedBody(request, limit) if has_body else None
    content: _LimitedBody | bytes | None = body
    several = len(route.upstream.instances) > 1
    if body is not None and several and may_send_again(request.method, request.headers.keys()):
        # In memory: if an instance breaks the exchange, another one gets it again (GW-2).
        content = await body.read()
    upstream_request = client.build_request(
        request.method, f"{raw_path}?{query}" if query else raw_path, headers=headers,
        content=content,
    )  # fmt: skip
    name = route.upstream.name
    call = UpstreamCall(name)
    try:
        answer = await client.send(upstream_request, stream=True)
    except Exception as exc:
        if body is not None and body.exceeded:
            call.ended("too_large")
            raise _too_large(limit) from None
        problem = _transport_problem(name, exc)
        call.ended(_failure_outcome(exc))
        if problem is exc:
            raise
        raise problem from None
    if body is not None and body.exceeded:
        call.ended("too_large")
        await answer.aclose()
        raise _too_large(limit)
    call.answered(answer.status_code)
    return await _answer(request, answer)


def _failure_outcome(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "unreachable"
    return "failed"


async def _answer(request: Request, answer: httpx.Response) -> Response:
    rid = request.state.request_id
    content_type = answer.headers.get("content-type", "")
    if answer.status_code >= 400 and not content_type.startswith(PROBLEM_JSON):
        await answer.aclose()
        problem = Problem(answer.status_code, HTTPStatus(answer.status_code).phrase)
        return _problem(request, problem)
    response = StreamingResponse(
        answer.aiter_raw(), status_code=answer.status_code, background=BackgroundTask(answer.aclose)
    )
    response.raw_headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in h.client_response_headers(answer.headers.multi_items(), rid)
    ]
    return response


# --------------------------------------------------------------------------- app


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(
        title="portal gateway", openapi_url=None, docs_url=None, redoc_url=None,
    )  # fmt: skip
    app.state.gateway = gateway
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    instrument_app(app, gateway.settings.service_name)
    # Outermost: the request id is settled before the instrumentation binds it.
    app.add_middleware(RequestIdMiddleware)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "up"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        try:
            await gateway.limits.ready()
        except StorageError:
            return JSONResponse({"status": "down", "failures": ["rate-limits"]}, 503)
        return JSONResponse({"status": "up", "failures": []})

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        """Every customer route of every upstream service, as one document."""
        return JSONResponse(await gateway.openapi.document())

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Customer portal API")

    app.router.add_route("/{path:path}", proxy, methods=METHODS, include_in_schema=False)
    return app
