"""`gateway serve`: the customers' one entry point, until SIGTERM; its own `/metrics` on
PORTAL_METRICS_PORT when set (never on the customers' port)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import uvicorn
from servicekit.http import metrics_app
from servicekit.runner import Loop, serve

from gateway.bootstrap import build
from gateway.config import GatewaySettings
from gateway.entrypoints.api import create_app


class _Server(uvicorn.Server):
    """A second server in the process: the first one (servicekit's runner) owns the
    signals; this one stops when the runner's loops stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def metrics_loop(host: str, port: int) -> Loop:
    async def metrics_server(stop: asyncio.Event) -> None:
        config = uvicorn.Config(
            metrics_app(), host=host, port=port, log_config=None, access_log=False
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        await serving
        if not stop.is_set():  # it ended by itself (the port taken): the process ends too
            raise RuntimeError(f"the metrics server on port {port} stopped")

    return metrics_server


async def _serve() -> None:
    settings = GatewaySettings()
    gateway = build(settings)
    loops = (
        [metrics_loop(settings.http_host, settings.metrics_port)] if settings.metrics_port else []
    )
    try:
        await serve(create_app(gateway), settings.http_host, settings.http_port, loops)
    finally:
        await gateway.close()


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """On uvloop when it is installed (the proxy's per-request I/O costs less there)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(prog="gateway")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args()
    _run(_serve)
