"""The operator API on the real PostgreSQL and Kafka: which system may call which route
(OWASP API5, issue 7 item 10), and the OpenAPI document's promises under generated
requests (schemathesis, item 12)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from notifier_harness import (
    OTHER_SYSTEMS,
    NotifierProcess,
    operator_headers,
    running_notifier,
    system_headers,
)
from notifier_servers import free_port
from servicekit.apitest import api_failures
from servicekit.db import drop_schema
from servicekit.testing import unique

pytestmark = pytest.mark.integration

UNKNOWN_KEY = "0b6c3d0e-8f5e-5b1a-9f2e-000000000000"
#: Every operator route with the operation it needs (servicekit.permissions.Operation) and
#: what an operator gets for an unknown message key / an empty store.
ROUTES = [
    ("GET", "/internal/notifier/deliveries", "deliveries", 200),
    ("GET", "/internal/notifier/dead-letters", "deliveries", 200),
    ("GET", f"/internal/notifier/deliveries/{UNKNOWN_KEY}", "deliveries", 404),
    ("GET", f"/internal/notifier/deliveries/{UNKNOWN_KEY}/log", "deliveries", 404),
    ("POST", f"/internal/notifier/deliveries/{UNKNOWN_KEY}/replay", "replays", 404),
    ("GET", "/internal/notifier/stats", "deliveries", 200),
]


async def test_ops1_only_operators_may_read_and_replay_deliveries_route_by_route() -> None:
    async with running_notifier(smtp_port=9) as notifier:
        for method, path, operation, operators_get in ROUTES:
            anonymous = await notifier.http.request(method, path)
            assert anonymous.status_code == 401, (method, path)
            for system in sorted(OTHER_SYSTEMS):
                refused = await notifier.http.request(method, path, headers=system_headers(system))
                assert refused.status_code == 403, (system, method, path, refused.text)
                assert refused.headers["content-type"] == "application/problem+json"
                assert operation in refused.json()["detail"]
            allowed = await notifier.http.request(method, path, headers=operator_headers())
            assert allowed.status_code == operators_get, (method, path, allowed.text)


async def test_ops1_the_operations_each_system_may_call_are_configuration() -> None:
    """Granting collections `deliveries` (and nothing else) lets it read, not replay."""
    grants = {"operators": ["deliveries", "replays"], "collections": ["deliveries"]}
    async with running_notifier(smtp_port=9, system_operations=grants) as notifier:
        headers = system_headers("collections")
        listed = await notifier.http.get("/internal/notifier/deliveries", headers=headers)
        replayed = await notifier.http.post(
            f"/internal/notifier/deliveries/{UNKNOWN_KEY}/replay", headers=headers
        )
        assert listed.status_code == 200
        assert replayed.status_code == 403


async def test_ops1_the_operator_api_keeps_the_promises_of_its_openapi_document() -> None:
    """schemathesis against a real `notifier serve` with operator credentials: no 5xx, only
    documented statuses, content types and bodies (valid and invalid requests), < 60 s."""
    prefix = unique("ntapi") + "."
    notifier = NotifierProcess.configured(prefix, free_port(), smtp_host="127.0.0.1")
    try:
        notifier.start()
        await notifier.ready()
        async with httpx.AsyncClient(base_url=notifier.url) as client:
            paths = (await client.get("/openapi.json")).json()["paths"]
        failures = await asyncio.to_thread(
            api_failures,
            notifier.url,
            auth=lambda method, path: operator_headers(),
        )
    finally:
        notifier.stop()
        await drop_schema(notifier.env["PORTAL_DATABASE_URL"], prefix.rstrip("."))
    assert {route[1].replace(UNKNOWN_KEY, "{message_key}") for route in ROUTES} <= set(paths)
    assert failures == [], "\n".join(str(f) for f in failures)
