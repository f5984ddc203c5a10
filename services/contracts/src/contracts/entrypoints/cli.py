"""`contracts serve`: the HTTP API, the outbox relay and the ingestion consumers."""

from __future__ import annotations

import argparse
import asyncio

from servicekit.runtime import serve_service

from contracts.bootstrap import build, create_http_app
from contracts.config import ContractsSettings


async def _serve() -> None:
    await serve_service(await build(ContractsSettings()), create_http_app)


def main() -> None:
    parser = argparse.ArgumentParser(prog="contracts")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args()
    asyncio.run(_serve())
