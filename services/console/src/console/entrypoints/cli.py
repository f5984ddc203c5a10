"""console serve    the operators' web page and its JSON API (port 8010)"""

from __future__ import annotations

import argparse
import asyncio

from servicekit.runner import serve

from console.bootstrap import build
from console.config import ConsoleSettings
from console.entrypoints.api import create_app


async def _serve() -> None:
    settings = ConsoleSettings()
    service = await build(settings)
    try:
        await serve(create_app(service), settings.http_host, settings.http_port, service.loops())
    finally:
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="console", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the console")
    args = parser.parse_args()
    if args.command == "serve":
        asyncio.run(_serve())
