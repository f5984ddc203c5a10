"""Trace lookup by trace id or request id, in a JSON-lines file of finished spans.

servicekit.tracing writes spans to `PORTAL_TRACE_FILE` (`make run`: `.local/run/traces.jsonl`),
one JSON object per line (`servicekit.tracing.span_record`: trace_id, span_id,
parent_span_id, name, service, start_ns, end_ns, attributes). The console also accepts
ISO `start_time`/`end_time` and OpenTelemetry's own JSON of a span:

    {"trace_id": "4bf9...", "span_id": "00f0...", "parent_span_id": null,
     "name": "POST /contracts/...", "service": "contracts",
     "start_time": "2026-...Z", "end_time": "...", "attributes": {"request_id": "..."}}
    {"context": {"trace_id": "0x4bf9...", "span_id": "0x00f0..."}, "parent_id": "0x...",
     "resource": {"attributes": {"service.name": "contracts"}}, ...}

A request id is found in the attributes `request_id`, `portal.request_id` or
`http.request.header.x-request-id`; the lookup returns every span of the traces that
carry it. Lines that are not JSON are skipped (a file being written).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REQUEST_ID_ATTRIBUTES = ("request_id", "portal.request_id", "http.request.header.x-request-id")


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    start_time: str
    end_time: str
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def request_id(self) -> str | None:
        for name in REQUEST_ID_ATTRIBUTES:
            value = self.attributes.get(name)
            if isinstance(value, list) and value:
                value = value[0]
            if value:
                return str(value)
        return None


def _hex(value: Any) -> str:
    text = str(value or "")
    return text[2:] if text.startswith("0x") else text


def _time(data: dict[str, Any], which: str) -> str:
    """ISO time of `start_time`/`end_time`, or of `start_ns`/`end_ns` (nanoseconds, as
    servicekit.tracing's file exporter writes them)."""
    nanos = data.get(f"{which}_ns")
    if isinstance(nanos, int):
        moment = datetime.fromtimestamp(nanos / 1e9, UTC)
        return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return str(data.get(f"{which}_time", ""))


def parse_span(data: dict[str, Any]) -> Span | None:
    context = data.get("context") or {}
    trace_id = _hex(data.get("trace_id") or context.get("trace_id"))
    span_id = _hex(data.get("span_id") or context.get("span_id"))
    if not trace_id or not span_id:
        return None
    resource = (data.get("resource") or {}).get("attributes") or {}
    return Span(
        trace_id=trace_id.lower(),
        span_id=span_id.lower(),
        parent_span_id=_hex(data.get("parent_span_id") or data.get("parent_id")) or None,
        name=str(data.get("name", "")),
        service=str(data.get("service") or resource.get("service.name") or ""),
        start_time=str(data.get("start_time", "")),
        end_time=str(data.get("end_time", "")),
        attributes=dict(data.get("attributes") or {}),
    )


def read_spans(path: Path) -> list[Span]:
    spans: list[Span] = []
    if not path.exists():
        return spans
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            span = parse_span(data) if isinstance(data, dict) else None
            if span is not None:
                spans.append(span)
    return spans


def lookup(path: Path | None, wanted: str) -> list[Span]:
    """The spans of the trace `wanted` names (a trace id or a request id), by start."""
    if path is None:
        return []
    wanted = _hex(wanted.strip()).lower()
    spans = read_spans(path)
    traces = {
        s.trace_id for s in spans if s.trace_id == wanted or (s.request_id or "").lower() == wanted
    }
    return sorted((s for s in spans if s.trace_id in traces), key=lambda s: s.start_time)
