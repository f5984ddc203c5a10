"""GW-1/issue 9: bad input everywhere is a 4xx problem document, never a 5xx -
schemathesis (servicekit.apitest) generates valid and invalid requests for every operation
of the gateway's combined OpenAPI and sends them through the gateway to the real services,
as a real customer, bounded in time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from e2e_harness import Platform, eventually, onboard
from servicekit.apitest import api_failures

pytestmark = pytest.mark.e2e

# Generated requests come "from" an address of their own behind the gateway (the tests
# stand in for its load balancer): identity's login throttle for it never slows the other
# tests, which come from 127.0.0.1.
FUZZER_ADDRESS = "198.51.100.77"


async def test_gw1_schemathesis_through_the_gateway_finds_no_server_error(
    platform: Platform, publish: Any
) -> None:
    customer = await onboard(platform, publish)
    headers = {"Authorization": f"Bearer {customer.token}", "X-Forwarded-For": FUZZER_ADDRESS}
    # The gateway's combined document names a service's routes once it could fetch that
    # service's own: fuzz only a document that has every routed service in it.
    eventually(lambda: _routed_services_described(platform))
    failures = await asyncio.to_thread(
        api_failures, platform.urls["gateway"], auth=lambda method, path: headers,
        max_examples=8,
    )  # fmt: skip
    assert not failures, "\n".join(str(f) for f in failures)


ROUTED = ("/identity", "/contracts", "/loyalty", "/claims", "/documents")


def _routed_services_described(platform: Platform) -> bool:
    with platform.gateway() as gateway:
        paths = gateway.get("/openapi.json").json()["paths"]
    return all(any(path.startswith(prefix) for path in paths) for prefix in ROUTED)
