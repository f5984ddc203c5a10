"""Prometheus metrics every service exposes on /metrics (OPS-2).

Conventions: names start with `portal_`; counters end in `_total`, durations are
`_seconds` histograms; labels are bounded sets (route templates, never raw paths; groups,
topics, channels, statuses) and never carry personal data or ids of customers, policies
or anything else that grows with the data. `counter`, `histogram_seconds` and `gauge`
check this when a service declares its own metrics.

What servicekit measures itself:
- HTTP (`http.create_app`, or `instrument_app` for an app made otherwise): requests by
  method, route template and status, and their duration;
- consumers (`stream.InboxConsumer`): events per group by outcome (applied, duplicate,
  dead_lettered), batch durations; consumer lag per group, topic and partition (`lag`);
- the outbox (`outbox.OutboxRelay`): published, publish failures, the backlog and the age
  of its oldest unpublished row.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.logging import get_logger

log = get_logger(__name__)

# Label names that would carry personal data or unbounded ids.
FORBIDDEN_LABELS = frozenset(
    {
        "customer", "customer_id", "account", "account_id", "user", "user_id", "email",
        "iban", "name", "phone", "mobile", "address", "policy", "policy_id", "policy_number",
        "claim_id", "document_id", "notification_id", "event_id", "request_id", "trace_id",
        "path", "url", "token", "ip", "client",
    }
)  # fmt: skip
_NAME = re.compile(r"^portal_[a-z][a-z0-9_]*$")

# Latencies of HTTP requests and batches: 5 ms .. 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _check(name: str, labels: Sequence[str]) -> None:
    if not _NAME.match(name):
        raise ValueError(f"metric {name!r}: names are portal_<lower_snake_case>")
    forbidden = sorted(set(labels) & FORBIDDEN_LABELS)
    if forbidden:
        raise ValueError(f"metric {name!r}: label(s) {forbidden} may carry personal data or ids")


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    """A counter `portal_..._total` with bounded labels."""
    _check(name, labels)
    if not name.endswith("_total"):
        raise ValueError(f"counter {name!r} must end in _total")
    return Counter(name, documentation, list(labels))


def histogram_seconds(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> Histogram:
    """A duration histogram `portal_..._seconds` with bounded labels."""
    _check(name, labels)
    if not name.endswith("_seconds"):
        raise ValueError(f"histogram {name!r} must end in _seconds")
    return Histogram(name, documentation, list(labels), buckets=tuple(buckets))


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    """A gauge (a level: backlog, lag, claims by status) with bounded labels."""
    _check(name, labels)
    if name.endswith("_total"):
        raise ValueError(f"gauge {name!r} must not end in _total (that is a counter)")
    return Gauge(name, documentation, list(labels))


# --------------------------------------------------------------------------- HTTP

HTTP_REQUESTS = counter(
    "portal_http_requests_total",
    "HTTP requests answered, by method, route template and status",
    ["service", "method", "route", "status"],
)
HTTP_SECONDS = histogram_seconds(
    "portal_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template",
    ["service", "method", "route"],
)
UNMATCHED_ROUTE = "<unmatched>"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
# A route template an app sets itself (`request.state.route_template = "/contracts"`), e.g.
# the gateway's catch-all route, takes precedence over the framework's matched route.
ROUTE_TEMPLATE_STATE = "route_template"

# --------------------------------------------------------------------------- consumers

CONSUMED = counter(
    "portal_consumer_events_total",
    "Events a consumer group handled, by outcome: applied | duplicate | dead_lettered",
    ["group", "outcome"],
)
BATCH_SECONDS = histogram_seconds(
    "portal_consumer_batch_seconds", "Time to apply one fetched batch", ["group"]
)
CONSUMER_LAG = gauge(
    "portal_consumer_lag",
    "Records behind: end offset minus the group's committed offset, per partition",
    ["group", "topic", "partition"],
)
CONSUMER_LAG_UPDATED = gauge(
    "portal_consumer_lag_updated_timestamp_seconds",
    "When the consumer lag of a group was last measured (Unix time)",
    ["group"],
)

# --------------------------------------------------------------------------- outbox

OUTBOX_PUBLISHED = counter(
    "portal_outbox_published_total", "Events the outbox relay published", ["service"]
)
OUTBOX_PUBLISH_FAILURES = counter(
    "portal_outbox_publish_failures_total", "Relay rounds the broker refused", ["service"]
)
OUTBOX_BACKLOG = gauge(
    "portal_outbox_backlog", "Outbox rows not yet published (measured by the relay)", ["service"]
)
OUTBOX_OLDEST_AGE = gauge(
    "portal_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest outbox row not yet published; 0 when none waits",
    ["service"],
)

# --------------------------------------------------------------------------- services
# Declared here so that names and labels are one vocabulary for rules and the console.

LOYALTY_POINTS = counter(
    "portal_loyalty_points_total",
    "Points moved on customers' accounts, by movement: credited | expired | forfeited",
    ["movement"],
)
CLAIMS_BY_STATUS = gauge("portal_claims", "Claims by their current status", ["status"])


Refresh = Callable[[], Awaitable[None]]


def refresh_loop(refresh: Refresh, every: float = 15.0) -> Callable[[asyncio.Event], Any]:
    """A service loop calling `refresh` (which sets gauges from the database) every
    `every` seconds until stop; a failing round is logged and the next one tries again."""

    async def refreshing(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await refresh()
            except Exception as exc:
                log.warning("metrics_refresh_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    refreshing.__name__ = f"metrics:{getattr(refresh, '__name__', 'refresh')}"
    return refreshing


# --------------------------------------------------------------------------- middleware

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("servicekit.http")
REQUEST_ID_HEADER = b"x-request-id"
# Set on an exception the middleware logged, so that the app's last-resort handler
# (outside the request's span and request id) does not log it again.
LOGGED_ATTRIBUTE = "_portal_logged"


class Instrumentation:
    """ASGI middleware: a SERVER span per request, continuing the caller's W3C trace
    context, and the request metrics, labelled by route template (never the raw path).

    It also settles the request id first (the caller's `X-Request-ID`, else a new one, put
    in the request's headers for the app to find) and binds it for the logs, so that every
    line of the request - an unhandled error's included - has its request and trace id.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # The labelled children per (method, route, status): found once, not per request.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        if method not in HTTP_METHODS:
            method = OTHER_METHOD  # a label value the client could invent: bounded
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k in (b"traceparent", b"tracestate")
        }
        rid = _request_id(scope)
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        status = 500
        with _TRACER.start_as_current_span(
            method, context=_PROPAGATOR.extract(carrier) if carrier else Context(),
            kind=SpanKind.SERVER, record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip

            async def send_and_note(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_and_note)
            except Exception as exc:
                status = 500
                if span.is_recording():
                    span.set_attribute("exception.type", type(exc).__name__)  # no message
                log.error("unhandled_error", route=route_template(scope), exc_info=exc)
                setattr(exc, LOGGED_ATTRIBUTE, True)
                raise
            finally:
                structlog.contextvars.reset_contextvars(**bound)
                route = route_template(scope)
                if span.is_recording():
                    span.update_name(f"{method} {route}")
                    span.set_attributes({
                        "portal.request_id": rid, "http.request.method": method,
                        "http.route": route, "http.response.status_code": status,
                    })  # fmt: skip
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                requests, seconds = self._metrics(method, route, status)
                requests.inc()
                seconds.observe(time.perf_counter() - started)

    def _metrics(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                HTTP_REQUESTS.labels(self.service, method, route, str(status)),
                HTTP_SECONDS.labels(self.service, method, route),
            )
            self._children[key] = children
        return children


def _request_id(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == REQUEST_ID_HEADER and value:
            return str(value.decode("latin-1"))
    rid = str(uuid.uuid4())
    scope["headers"] = [*scope["headers"], (REQUEST_ID_HEADER, rid.encode("latin-1"))]
    return rid


def route_template(scope: Scope) -> str:
    state = scope.get("state") or {}
    template = state.get(ROUTE_TEMPLATE_STATE) if isinstance(state, dict) else None
    if template:
        return str(template)
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    return str(path) if path else UNMATCHED_ROUTE


def instrument_app(app: Any, service: str) -> None:
    """Add `Instrumentation` to an app not made by `servicekit.http.create_app` (the
    gateway); call it after every other `add_middleware`, so it is the outermost."""
    app.add_middleware(Instrumentation, service=service)
