"""GW-2 with real processes: two instances of an upstream, each a process of its own on a
real socket, behind the gateway (real HTTP, its limits in the launcher's Redis). Both take
requests; one is killed (-9) and every request is still answered 2xx - by the other, the
writes too (a refused connection reached nobody)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from gateway.bootstrap import build
from gateway.config import GatewaySettings, UpstreamSettings
from gateway.entrypoints.api import create_app
from gateway_world import JWKS, bearer, free_port, keys_app, serving, token

pytestmark = pytest.mark.integration
WORLD = Path(__file__).resolve().parent.parent / "gateway_world.py"
STARTS_WITHIN = 120.0  # a hang guard: imports take long on a loaded machine


@contextmanager
def instance(name: str, letter: str, logs: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """One instance of upstream `name` as a process (gateway_world.instance_app)."""
    port = free_port()
    log = logs / f"{name}-{letter}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(WORLD), name, letter, str(port)], stdout=out, stderr=out
        )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


async def answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the instance answers (polled; fails at once if the process ended)."""
    began = time.monotonic()
    async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
        while time.monotonic() - began < STARTS_WITHIN:
            assert process.poll() is None, _read(log)
            try:
                if (await http.get(f"{url}/contracts/whoami")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not start:\n{_read(log)}")


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


@asynccontextmanager
async def gateway(redis_url: str, identity: str, contracts: tuple[str, ...]) -> AsyncIterator[
    httpx.AsyncClient
]:  # fmt: skip
    settings = GatewaySettings(
        upstreams={"identity": UpstreamSettings(url=identity),
                   "contracts": UpstreamSettings(urls=contracts)},
        routes={"/identity": "identity", "/.well-known/jwks.json": "identity",
                "/contracts": "contracts"},
        redis_url=redis_url, topic_prefix=uuid.uuid4().hex + ".",
    )  # fmt: skip
    running = build(settings)
    transport = httpx.ASGITransport(app=create_app(running), client=("198.51.100.20", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as http:
            yield http
    finally:
        await running.close()


async def test_gw2_one_of_two_real_instances_killed_every_request_is_still_answered(
    redis_url: str, tmp_path: Path
) -> None:
    with (
        instance("contracts", "a", tmp_path) as (a, a_url),
        instance("contracts", "b", tmp_path) as (b, b_url),
    ):
        await answering(a_url, a, tmp_path / "contracts-a.log")
        await answering(b_url, b, tmp_path / "contracts-b.log")
        async with (
            serving(keys_app(JWKS)) as identity,
            gateway(redis_url, identity, (a_url, b_url)) as http,
        ):
            auth = bearer(token("gw2-anna"))
            before = [await http.get("/contracts/whoami", headers=auth) for _ in range(4)]
            assert [r.status_code for r in before] == [200] * 4
            assert {r.json()["instance"] for r in before} == {"a", "b"}

            a.kill()
            a.wait()
            after = []
            for n in range(6):
                after.append(await http.get("/contracts/whoami", headers=auth))
                after.append(
                    await http.post("/contracts/orders", content=f"order {n}", headers=auth)
                )
            assert [r.status_code for r in after] == [200, 201] * 6, [r.text for r in after]
            assert {r.json()["instance"] for r in after} == {"b"}
            assert [r.json()["body"] for r in after[1::2]] == [f"order {n}" for n in range(6)]
