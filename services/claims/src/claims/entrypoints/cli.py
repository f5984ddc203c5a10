"""claims serve    API, outbox relay, the policy consumer, the claims-handling consumer, the
claims-by-status gauge and the overdue slip job (CL-3)"""

from __future__ import annotations

import argparse
import asyncio

from servicekit.runtime import serve_service

from claims.bootstrap import build
from claims.config import ClaimsSettings
from claims.entrypoints.api import create_app
from claims.entrypoints.metrics import claims_by_status
from claims.entrypoints.scheduler import overdue_slips
from claims.entrypoints.stream import subscribe


async def _serve() -> None:
    service = await build(ClaimsSettings())
    subscribe(service.stream, service.handlers)
    service.background.extend([claims_by_status(service), overdue_slips(service)])
    await serve_service(service, create_app)


def main() -> None:
    parser = argparse.ArgumentParser(prog="claims", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve")
    args = parser.parse_args()
    match args.command:
        case "serve":
            asyncio.run(_serve())
