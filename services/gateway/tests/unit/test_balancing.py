"""GW-2: an upstream with several instances. Requests spread over them (least in flight,
ties in turn); an instance that cannot be connected to is passed for any method and rests
for a cool-down; a failure after sending goes to another instance only for a request
that may be sent twice; the key set and the OpenAPI documents come from any instance."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from gateway.adapters.balancer import BalancedTransport, address
from gateway.config import UpstreamSettings
from gateway.domain.balancing import InstanceLoad, choose, may_send_again
from gateway_world import (
    ByHost,
    bearer,
    break_exchange,
    echo,
    gateway_world,
    identity_keys_app,
    token,
)
from pydantic import ValidationError

TWO = ("http://loyalty-1", "http://loyalty-2")
PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------- the rule


def test_gw2_equally_loaded_instances_take_requests_in_turn() -> None:
    loads = [InstanceLoad(), InstanceLoad(), InstanceLoad()]
    assert [choose(loads, [], 0.0, turn) for turn in range(6)] == [0, 1, 2, 0, 1, 2]


def test_gw2_the_instance_with_the_fewest_requests_in_flight_is_chosen() -> None:
    loads = [InstanceLoad(in_flight=3), InstanceLoad(in_flight=1), InstanceLoad(in_flight=2)]
    assert {choose(loads, [], 0.0, turn) for turn in range(3)} == {1}


def test_gw2_a_resting_instance_is_chosen_only_when_every_one_rests() -> None:
    loads = [InstanceLoad(resting_until=10.0), InstanceLoad(in_flight=5)]
    assert choose(loads, [], now=5.0, turn=0) == 1
    assert choose(loads, [], now=10.0, turn=1) == 0  # rested long enough
    resting = [InstanceLoad(resting_until=9.0), InstanceLoad(resting_until=8.0)]
    assert choose(resting, [], now=5.0, turn=0) == 1  # the one resting longest ago


def test_gw2_each_request_tries_every_instance_at_most_once() -> None:
    loads = [InstanceLoad(), InstanceLoad(resting_until=10.0)]
    assert choose(loads, [0], now=0.0, turn=0) == 1
    assert choose(loads, [0, 1], now=0.0, turn=0) is None


@pytest.mark.parametrize(
    ("method", "headers", "again"),
    [
        ("GET", [], True), ("HEAD", [], True), ("PUT", [], True), ("DELETE", [], True),
        ("OPTIONS", [], True), ("POST", [], False), ("PATCH", [], False),
        ("POST", ["Idempotency-Key"], True), ("PATCH", ["idempotency-key"], True),
    ],
)  # fmt: skip
def test_gw2_only_a_request_that_may_reach_the_upstream_twice_is_sent_again(
    method: str, headers: list[str], again: bool
) -> None:
    assert may_send_again(method, headers) is again


def test_gw2_an_upstream_names_one_url_or_several() -> None:
    assert UpstreamSettings(url="http://a").instances == ("http://a",)
    assert UpstreamSettings(urls=("http://a", "http://b")).instances == ("http://a", "http://b")
    with pytest.raises(ValidationError):
        UpstreamSettings(url="http://a", urls=("http://b",))
    with pytest.raises(ValidationError):
        UpstreamSettings()
    with pytest.raises(ValidationError):
        UpstreamSettings(urls=())


# --------------------------------------------------------------------------- the transport


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def balanced(
    instances: dict[str, httpx.AsyncBaseTransport], clock: Clock, refusing: tuple[str, ...] = ()
) -> tuple[httpx.AsyncClient, ByHost]:
    hosts = ByHost(instances, refusing)
    urls = [f"http://{host}" for host in sorted({*instances, *refusing})]
    transport = BalancedTransport("loyalty", urls, lambda url: hosts, 5.0, clock)
    return httpx.AsyncClient(transport=transport, base_url=address("loyalty")), hosts


async def test_gw2_a_refusing_instance_rests_for_the_cool_down_then_is_tried_again() -> None:
    clock = Clock()
    client, hosts = balanced({"loyalty-2": httpx.MockTransport(echo)}, clock, ("loyalty-1",))
    async with client:
        for _ in range(4):
            answer = await client.post("/loyalty/orders", content=b"one")
            assert answer.json()["host"] == "loyalty-2"
        assert hosts.sent == {"loyalty-1": 1, "loyalty-2": 4}
        clock.now = 5.0
        assert (await client.get("/loyalty/x")).json()["host"] == "loyalty-2"
        assert hosts.sent["loyalty-1"] == 2


async def test_gw2_an_instance_with_an_answer_still_open_gets_the_next_request_last() -> None:
    client, hosts = balanced(
        {"loyalty-1": httpx.MockTransport(echo), "loyalty-2": httpx.MockTransport(echo)},
        Clock(),
    )  # fmt: skip
    async with client:
        request = client.build_request("GET", "/loyalty/slow")
        open_answer = await client.send(request, stream=True)  # its body not read yet
        assert hosts.sent == {"loyalty-1": 1}
        hosts_seen = [(await client.get("/loyalty/x")).json()["host"] for _ in range(3)]
        assert hosts_seen == ["loyalty-2"] * 3
        await open_answer.aclose()
        hosts_seen = [(await client.get("/loyalty/x")).json()["host"] for _ in range(2)]
        assert sorted(hosts_seen) == ["loyalty-1", "loyalty-2"]


async def test_gw2_an_instance_path_prefix_is_kept() -> None:
    hosts = ByHost({"edge": httpx.MockTransport(echo)})
    transport = BalancedTransport("loyalty", ["http://edge/api/"], lambda url: hosts, 5.0)
    async with httpx.AsyncClient(transport=transport, base_url=address("loyalty")) as client:
        assert (await client.get("/loyalty/x?y=1")).json()["path"] == "/api/loyalty/x"


# --------------------------------------------------------------------------- through the gateway


async def test_gw2_requests_are_spread_over_an_upstreams_instances() -> None:
    hosts = ByHost({"loyalty-1": httpx.MockTransport(echo), "loyalty-2": httpx.MockTransport(echo)})
    async with gateway_world(transports={"loyalty": hosts}, instances={"loyalty": TWO}) as world:
        for _ in range(4):
            answer = await world.http.get("/loyalty/statement", headers=bearer(token()))
            assert answer.status_code == 200
    assert hosts.sent == {"loyalty-1": 2, "loyalty-2": 2}


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", {}, 200), ("PUT", {}, 200), ("DELETE", {}, 200),
        ("POST", {"Idempotency-Key": "order-1"}, 200),
        ("POST", {}, 502), ("PATCH", {}, 502),
    ],
)  # fmt: skip
async def test_gw2_a_broken_exchange_goes_to_the_next_instance_only_if_it_may_be_sent_twice(
    method: str, headers: dict[str, str], status: int
) -> None:
    """The first request of an upstream goes to its first instance, which breaks it."""
    hosts = ByHost({"loyalty-1": httpx.MockTransport(break_exchange),
                    "loyalty-2": httpx.MockTransport(echo)})  # fmt: skip
    body = b"" if method == "GET" else b'{"points": 300}'
    async with gateway_world(transports={"loyalty": hosts}, instances={"loyalty": TWO}) as world:
        answer = await world.http.request(
            method, "/loyalty/orders", content=body, headers=bearer(token()) | headers
        )
    if status == 200:
        assert answer.status_code == 200, answer.text
        assert answer.json()["host"] == "loyalty-2"
        assert answer.json()["body"] == body.decode()  # the same body, whole, again
        assert hosts.sent == {"loyalty-1": 1, "loyalty-2": 1}
    else:
        assert assert_problem(answer, status)["upstream"] == "loyalty"
        assert hosts.sent == {"loyalty-1": 1}


async def test_gw2_a_refusing_instance_is_passed_whatever_the_method() -> None:
    hosts = ByHost({"loyalty-2": httpx.MockTransport(echo)}, refusing=("loyalty-1",))
    async with gateway_world(transports={"loyalty": hosts}, instances={"loyalty": TWO}) as world:
        for method in ("POST", "PATCH", "GET"):
            answer = await world.http.request(
                method, "/loyalty/orders", content=b"x", headers=bearer(token())
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["host"] == "loyalty-2"


async def test_gw2_every_instance_refusing_is_a_503_problem() -> None:
    hosts = ByHost({}, refusing=("loyalty-1", "loyalty-2"))
    async with gateway_world(transports={"loyalty": hosts}, instances={"loyalty": TWO}) as world:
        answer = await world.http.post("/loyalty/orders", headers=bearer(token()))
        assert assert_problem(answer, 503)["upstream"] == "loyalty"
    assert hosts.sent == {"loyalty-1": 1, "loyalty-2": 1}


async def test_gw2_the_key_set_and_openapi_come_from_any_instance_of_identity() -> None:
    hosts = ByHost({"identity-2": httpx.ASGITransport(app=identity_keys_app())},
                   refusing=("identity-1",))  # fmt: skip
    async with gateway_world(
        transports={"identity": hosts},
        instances={"identity": ("http://identity-1", "http://identity-2")},
    ) as world:
        answer = await world.http.get("/contracts/echo/x", headers=bearer(token()))
        assert answer.status_code == 200, answer.text
        document = (await world.http.get("/openapi.json")).json()
        assert "/.well-known/jwks.json" in document["paths"]
