"""OpenTelemetry tracing, with the W3C trace context carried in Kafka headers (OPS-2).

One trace follows a request: the gateway's SERVER span, its CLIENT span to the upstream,
the upstream's SERVER span (`metrics.Instrumentation`), the events it records (their
`traceparent` stored in the outbox row and sent as a CloudEvents header), the consumers'
spans (`context_from_headers`) and what those record in turn.

Where spans go (`configure_tracing`, read from the environment):
- `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` set: OTLP over
  HTTP (protobuf) to that collector;
- else `PORTAL_TRACE_FILE` set: JSON lines appended to that file (`make run` sets it to
  `.local/run/traces.jsonl`), one span per line, several processes may share the file;
- else nowhere (spans are still made, so trace ids reach the logs and the outbox).
`PORTAL_TRACE_EXPORT_DELAY_MS` (default 1000) is how long spans wait to be exported in
batches.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
TRACE_FILE_ENV = "PORTAL_TRACE_FILE"
OTLP_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def configure_tracing(service: str) -> None:
    """Install an SDK tracer provider for `service` with the exporter the environment names
    (see the module's text). Once per process: a provider already installed stays."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = exporter_from_environment()
    if exporter is not None:
        delay = int(os.environ.get("PORTAL_TRACE_EXPORT_DELAY_MS", "1000"))
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay))
    trace.set_tracer_provider(provider)


def exporter_from_environment() -> SpanExporter | None:
    if any(os.environ.get(name) for name in OTLP_ENVS):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout: the standard OTEL_* variables
    path = os.environ.get(TRACE_FILE_ENV)
    if path:
        return JsonLinesSpanExporter(Path(path))
    return None


class JsonLinesSpanExporter(SpanExporter):
    """Spans as JSON lines, appended to one file: each export is one `write` on a file
    opened with O_APPEND, so processes sharing the file never interleave their lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(span_record(s), separators=(",", ":")) + "\n" for s in spans)
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, text.encode())
                finally:
                    os.close(fd)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_record(span: ReadableSpan) -> dict[str, object]:
    """One span as the file exporter writes it (and the trace tests read it)."""
    context = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": format(context.trace_id, "032x") if context else None,
        "span_id": format(context.span_id, "016x") if context else None,
        "parent_span_id": format(parent.span_id, "016x") if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [format(link.context.trace_id, "032x") for link in span.links],
    }


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    """The `traceparent` of the active span, to store beside an outgoing event."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` with the active span's `traceparent` (and `tracestate`): for an outgoing
    HTTP call made without an instrumented client."""
    _PROPAGATOR.inject(headers)
    return headers


def traced_client(**kwargs: Any) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` (built with `kwargs`) for calls to the platform's other
    services: every request it sends carries the trace context active when it is sent, so
    the callee's spans and the events it records join the caller's trace. Hooks passed in
    `event_hooks` still run (after the injection on "request")."""
    hooks: dict[str, list[Any]] = {
        name: list(functions) for name, functions in kwargs.pop("event_hooks", {}).items()
    }
    hooks["request"] = [_inject_trace_context, *hooks.get("request", [])]
    return httpx.AsyncClient(event_hooks=hooks, **kwargs)


async def _inject_trace_context(request: httpx.Request) -> None:
    _PROPAGATOR.inject(request.headers)


def context_from_traceparent(traceparent: str) -> Context:
    """The trace context of one `traceparent` value (a link to a message's trace)."""
    return _PROPAGATOR.extract({"traceparent": traceparent})


def context_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> Context:
    """The trace context a Kafka message carries, to parent the consumer's span."""
    carrier = {
        k: v.decode("latin-1") for k, v in headers or () if k in ("traceparent", "tracestate") and v
    }
    return _PROPAGATOR.extract(carrier)
