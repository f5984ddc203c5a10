"""OPS-2 at the gateway: its requests by route label and status, the time they took, and
its calls to each upstream by outcome - labels bounded, never a raw path or a customer.
Its `/metrics` is served on a port of its own, never on the customers' door."""

from __future__ import annotations

import asyncio

import httpx
from gateway.entrypoints.cli import metrics_loop
from gateway_world import bearer, free_port, gateway_world, token
from prometheus_client import REGISTRY
from servicekit.http import metrics_app


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests(route: str, status: str, method: str = "GET") -> float:
    return sample(
        "portal_http_requests_total", service="gateway", method=method, route=route, status=status
    )


def upstream_calls(upstream: str, outcome: str) -> float:
    return sample("portal_gateway_upstream_requests_total", upstream=upstream, outcome=outcome)


def timed(route: str) -> float:
    return sample(
        "portal_http_request_duration_seconds_count",
        service="gateway", method="GET", route=route,
    )  # fmt: skip


async def test_ops2_gateway_requests_are_counted_by_routed_prefix_and_status() -> None:
    before = (requests("/contracts", "200"), requests("/contracts", "401"), timed("/contracts"))
    async with gateway_world() as world:
        for n in range(3):
            ok = await world.http.get(f"/contracts/echo/customer-{n}", headers=bearer(token()))
            assert ok.status_code == 200
        refused = await world.http.get("/contracts/echo/x")
        assert refused.status_code == 401
    assert requests("/contracts", "200") - before[0] == 3
    assert requests("/contracts", "401") - before[1] == 1
    assert timed("/contracts") - before[2] == 4


async def test_ops2_public_routes_keep_their_path_and_unknown_paths_are_one_label() -> None:
    login = requests("/identity/login", "200", method="POST")
    unmatched = requests("<unmatched>", "404")
    async with gateway_world() as world:
        assert (await world.http.post("/identity/login", json={})).status_code == 200
        for path in ("/nowhere/anna", "/metrics", "/internal/contracts/jobs"):
            assert (await world.http.get(path)).status_code == 404
    assert requests("/identity/login", "200", method="POST") - login == 1
    assert requests("<unmatched>", "404") - unmatched == 3
    exposition = REGISTRY.get_sample_value  # no raw path ever became a label value
    assert exposition("portal_http_requests_total", {"service": "gateway", "method": "GET",
                      "route": "/nowhere/anna", "status": "404"}) is None  # fmt: skip


async def test_ops2_upstream_calls_are_counted_by_upstream_and_outcome() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    answered = (upstream_calls("contracts", "2xx"), upstream_calls("contracts", "5xx"))
    unreachable = upstream_calls("loyalty", "unreachable")
    async with gateway_world(transports={"loyalty": httpx.MockTransport(refuse)}) as world:
        await world.http.get("/contracts/echo/x", headers=bearer(token()))
        await world.http.get("/contracts/plain-error", headers=bearer(token()))
        assert (await world.http.get("/loyalty/echo/x", headers=bearer(token()))).status_code == 503
    assert upstream_calls("contracts", "2xx") - answered[0] == 1
    assert upstream_calls("contracts", "5xx") - answered[1] == 1
    assert upstream_calls("loyalty", "unreachable") - unreachable == 1


async def test_ops2_the_metrics_app_serves_the_exposition() -> None:
    async with gateway_world() as world:
        await world.http.get("/contracts/echo/x", headers=bearer(token()))
    transport = httpx.ASGITransport(app=metrics_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'portal_http_requests_total{method="GET",route="/contracts",service="gateway"' in (
        answer.text
    )
    assert "portal_gateway_upstream_requests_total" in answer.text


async def test_ops2_the_metrics_port_serves_until_the_process_stops() -> None:
    port = free_port()
    stop = asyncio.Event()
    serving = asyncio.create_task(metrics_loop("127.0.0.1", port)(stop))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(500):
            try:
                answer = await http.get("/metrics")
                break
            except httpx.ConnectError:
                assert not serving.done(), serving.exception()
                await asyncio.sleep(0.01)
        assert answer.status_code == 200
        assert "portal_http_requests_total" in answer.text
    stop.set()
    await serving
