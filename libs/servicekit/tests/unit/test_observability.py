"""OPS-2 in servicekit: HTTP metrics by route template, server spans continuing the caller's
trace, trace and request ids in every log line, metric naming rules, the span file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from servicekit.http import Problem, create_app
from servicekit.logging import configure_logging
from servicekit.metrics import counter, gauge, histogram_seconds
from servicekit.tracing import JsonLinesSpanExporter, context_from_headers, current_traceparent

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


def app_client(service: str) -> TestClient:
    app = create_app(service)
    log = structlog.get_logger("test")

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        log.info("thing_read", thing=thing_id)
        if thing_id == "missing":
            raise Problem(404, "Not Found")
        if thing_id == "broken":
            raise RuntimeError("Erika Mustermann")
        return {"thing": thing_id}

    return TestClient(app, raise_server_exceptions=False)


def requests_counted(service: str, route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "portal_http_requests_total",
        {"service": service, "method": "GET", "route": route, "status": status},
    )
    return value or 0.0


def test_ops2_requests_are_counted_by_route_template_and_status_never_by_raw_path() -> None:
    client = app_client("metrics-a")
    for path in ("/things/1", "/things/2", "/things/missing", "/things/broken", "/nowhere/x"):
        client.get(path)
    assert requests_counted("metrics-a", "/things/{thing_id}", "200") == 2
    assert requests_counted("metrics-a", "/things/{thing_id}", "404") == 1
    assert requests_counted("metrics-a", "/things/{thing_id}", "500") == 1
    assert requests_counted("metrics-a", "<unmatched>", "404") == 1
    duration = REGISTRY.get_sample_value(
        "portal_http_request_duration_seconds_count",
        {"service": "metrics-a", "method": "GET", "route": "/things/{thing_id}"},
    )
    assert duration == 4
    exposed = client.get("/metrics").text
    assert "/things/1" not in exposed
    assert "/things/{thing_id}" in exposed


def test_ops2_a_method_the_client_invents_is_one_label_not_a_new_series_each() -> None:
    client = app_client("metrics-m")
    for method in ("FROBNICATE", "X-ANNA-MUSTERMANN", "GET"):
        client.request(method, "/things/1")

    def counted(method: str, status: str) -> float | None:
        return REGISTRY.get_sample_value(
            "portal_http_requests_total",
            {"service": "metrics-m", "method": method, "route": "/things/{thing_id}",
             "status": status},
        )  # fmt: skip

    assert counted("OTHER", "405") == 2
    assert counted("GET", "200") == 1
    assert counted("FROBNICATE", "405") is None


def test_ops2_a_server_span_continues_the_callers_trace(spans: InMemorySpanExporter) -> None:
    spans.clear()
    response = app_client("traced").get(
        "/things/7", headers={"traceparent": CALLER, "X-Request-ID": "req-77"}
    )
    assert response.status_code == 200
    (server,) = [s for s in spans.get_finished_spans() if s.name == "GET /things/{thing_id}"]
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert server.kind == trace.SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/things/{thing_id}"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["portal.request_id"] == "req-77"


def test_ops2_every_log_line_of_a_request_has_its_trace_id_and_request_id(
    spans: InMemorySpanExporter,
) -> None:
    out = io.StringIO()
    configure_logging("logged", stream=out)
    try:
        app_client("logged").get(
            "/things/3", headers={"traceparent": CALLER, "X-Request-ID": "r-3"}
        )
        app_client("logged").get("/things/broken", headers={"X-Request-ID": "r-4"})
    finally:
        configure_logging("test")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    read = [line for line in lines if line["event"] == "thing_read"]
    assert [line["request_id"] for line in read] == ["r-3", "r-4"]
    assert read[0]["trace_id"] == CALLER_TRACE
    assert all(line["trace_id"] and len(line["trace_id"]) == 32 for line in read)
    (failure,) = [line for line in lines if line["event"] == "unhandled_error"]
    assert failure["request_id"] == "r-4"
    assert failure["trace_id"] == read[1]["trace_id"]
    assert "RuntimeError: <message withheld>" in failure["exception"]
    assert "Erika" not in out.getvalue()
    assert all({"trace_id", "request_id", "service", "level"} <= line.keys() for line in lines)


def test_ops2_kafka_headers_carry_the_trace_to_the_consumer(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("t").start_as_current_span("produce"):
        traceparent = current_traceparent()
    assert traceparent is not None
    context = context_from_headers([("traceparent", traceparent.encode())])
    with trace.get_tracer("t").start_as_current_span("consume", context=context) as consumer:
        assert current_traceparent() is not None
    assert consumer.get_span_context().trace_id == int(traceparent.split("-")[1], 16)


def test_ops2_metric_names_and_labels_follow_the_conventions() -> None:
    with pytest.raises(ValueError, match="_total"):
        counter("portal_things", "no suffix")
    with pytest.raises(ValueError, match="_seconds"):
        histogram_seconds("portal_thing_duration", "no unit")
    with pytest.raises(ValueError, match="personal data"):
        counter("portal_logins_total", "by customer", ["customer_id"])
    with pytest.raises(ValueError, match="portal_"):
        gauge("Things", "bad name")
    assert counter("portal_conventions_ok_total", "fine", ["channel"])


def test_ops2_the_span_file_holds_one_json_line_per_span(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    spans.clear()
    tracer = trace.get_tracer("t")
    with tracer.start_as_current_span("parent"), tracer.start_as_current_span("child"):
        pass
    file = tmp_path / "spans" / "traces.jsonl"
    exporter = JsonLinesSpanExporter(file)
    exporter.export(spans.get_finished_spans())
    exporter.export(spans.get_finished_spans())
    records = [json.loads(line) for line in file.read_text().splitlines()]
    assert [r["name"] for r in records] == ["child", "parent", "child", "parent"]
    child, parent = records[0], records[1]
    assert child["trace_id"] == parent["trace_id"]
    assert child["parent_span_id"] == parent["span_id"]
