"""`gateway serve`: the customers' one entry point, until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio

from servicekit.runner import serve

from gateway.bootstrap import build
from gateway.config import GatewaySettings
from gateway.entrypoints.api import create_app


async def _serve() -> None:
    settings = GatewaySettings()
    gateway = build(settings)
    try:
        await serve(create_app(gateway), settings.http_host, settings.http_port)
    finally:
        await gateway.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="gateway")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args()
    asyncio.run(_serve())
