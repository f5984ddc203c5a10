"""OpenTelemetry tracing, with the W3C trace context carried in Kafka headers (OPS-2)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def configure_tracing(service: str) -> None:
    """Install an SDK tracer provider; exporters are added by deployment configuration."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": service})))


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    """The `traceparent` of the active span, to store beside an outgoing event."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> Context:
    """The trace context a Kafka message carries, to parent the consumer's span."""
    carrier = {k: v.decode("latin-1") for k, v in headers or () if k == "traceparent" and v}
    return _PROPAGATOR.extract(carrier)
