"""identity serve        API, outbox relay and the policy consumer
identity rotate-key   start signing with a new key (the old one stays published until
                      its tokens expired)"""

from __future__ import annotations

import argparse
import asyncio

from servicekit.runtime import serve_service

from identity import commands as c
from identity.bootstrap import build
from identity.config import IdentitySettings
from identity.entrypoints.api import create_app
from identity.entrypoints.stream import subscribe


async def _serve() -> None:
    service = await build(IdentitySettings())
    subscribe(service.stream, service.identity)
    await serve_service(service, create_app)


async def _rotate() -> None:
    service = await build(IdentitySettings())
    try:
        outcome = await service.transactions.execute(
            service.identity.rotate_signing_key, c.RotateSigningKey()
        )
        print(f"signing with {outcome.data['kid']}")
    finally:
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="identity", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve")
    commands.add_parser("rotate-key")
    args = parser.parse_args()
    match args.command:
        case "serve":
            asyncio.run(_serve())
        case "rotate-key":
            asyncio.run(_rotate())
