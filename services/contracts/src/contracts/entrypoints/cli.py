"""`contracts serve`: the HTTP API, the outbox relay and the ingestion consumers."""

from __future__ import annotations

import argparse
import asyncio

from servicekit.runner import serve

from contracts.bootstrap import build, create_http_app
from contracts.config import ContractsSettings


async def _serve() -> None:
    settings = ContractsSettings()
    service = await build(settings)
    try:
        await serve(
            create_http_app(service), settings.http_host, settings.http_port, service.loops()
        )
    finally:
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="contracts")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args()
    asyncio.run(_serve())
