"""`contracts serve`: the HTTP API, the outbox relay and the stream's subscribers."""

from __future__ import annotations

import argparse
import asyncio

from servicekit.runtime import serve_service

from contracts.bootstrap import build
from contracts.config import ContractsSettings
from contracts.entrypoints.api import create_app
from contracts.entrypoints.stream import subscribe


async def _serve() -> None:
    service = await build(ContractsSettings())
    subscribe(service.stream, service.contracts)
    await serve_service(service, create_app)


def main() -> None:
    parser = argparse.ArgumentParser(prog="contracts")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args()
    asyncio.run(_serve())
