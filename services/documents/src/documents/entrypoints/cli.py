"""documents serve               API, outbox relay, identity and upstream-document consumers
documents rotate-master-key   re-wrap every data key with the current master key (DOC-3);
                              afterwards the previous master key may be removed"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError
from servicekit.runtime import serve_service

from documents import commands as c
from documents.bootstrap import build
from documents.config import DocumentsSettings
from documents.entrypoints.api import create_app
from documents.entrypoints.stream import subscribe


def _settings() -> DocumentsSettings:
    """The settings, or a clear message and exit 2 (no master key falls back to a default)."""
    try:
        return DocumentsSettings()
    except ValidationError as error:
        for problem in error.errors():
            print(f"documents: configuration error: {problem['msg']}", file=sys.stderr)
        sys.exit(2)


async def _serve() -> None:
    service = await build(_settings())
    subscribe(service.stream, service.documents)
    await serve_service(service, create_app)


async def rotate_master_key(settings: DocumentsSettings, batch: int = 500) -> int:
    """Batches of one transaction each, until no data key is under an older master key."""
    service = await build(settings)
    total = 0
    try:
        while count := await service.transactions.execute(
            service.documents.rewrap_data_keys, c.RewrapDataKeys(batch)
        ):
            total += count
        return total
    finally:
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="documents", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve")
    rotate = commands.add_parser("rotate-master-key")
    rotate.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    match args.command:
        case "serve":
            asyncio.run(_serve())
        case "rotate-master-key":
            settings = _settings()
            total = asyncio.run(rotate_master_key(settings, args.batch))
            print(f"{total} data keys now wrapped by master key {settings.master_key_id}")
