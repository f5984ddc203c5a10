"""OPS-2, unit: a service's client to another service carries the caller's trace. A
request made inside a span sends that span's `traceparent`; outside any span it sends
none; the caller's own request hooks still run."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from servicekit.tracing import traced_client


@pytest.fixture(scope="module")
def tracer() -> trace.Tracer:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    return trace.get_tracer(__name__)


def recording(seen: list[httpx.Request]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    return httpx.MockTransport(answer)


async def test_ops2_a_request_made_inside_a_span_carries_its_traceparent(
    tracer: trace.Tracer,
) -> None:
    seen: list[httpx.Request] = []
    async with traced_client(transport=recording(seen)) as client:
        with tracer.start_as_current_span("caller") as span:
            await client.post("http://identity/internal/identity/mtans", json={})
    context = span.get_span_context()
    version, trace_id, parent_id, _flags = seen[0].headers["traceparent"].split("-")
    assert (version, trace_id, parent_id) == (
        "00",
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    )


async def test_ops2_a_request_outside_any_span_carries_no_traceparent(
    tracer: trace.Tracer,
) -> None:
    seen: list[httpx.Request] = []
    async with traced_client(transport=recording(seen)) as client:
        await client.get("http://documents/internal/documents/1")
    assert "traceparent" not in seen[0].headers


async def test_ops2_the_callers_own_request_hooks_still_run(tracer: trace.Tracer) -> None:
    seen: list[httpx.Request] = []
    hooked: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooked.append(request.headers.get("traceparent", ""))

    async with traced_client(transport=recording(seen), event_hooks={"request": [hook]}) as client:
        with tracer.start_as_current_span("caller"):
            await client.get("http://loyalty/health/ready")
    assert hooked == [seen[0].headers["traceparent"]]
