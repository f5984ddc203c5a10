"""identity serve        API, outbox relay and the policy consumer
identity rotate-key   start signing with a new key (the old one stays published until
                      its tokens expired)
identity create-operator USERNAME
                      an operator account for the console (OPS-1); the password is read
                      from standard input, the TOTP secret for the authenticator app is
                      printed once"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError
from servicekit.runtime import serve_service

from identity import commands as c
from identity.bootstrap import build
from identity.config import IdentitySettings
from identity.domain.operators import provisioning_uri
from identity.domain.rules import IdentityError
from identity.entrypoints.api import create_app
from identity.entrypoints.stream import subscribe


def _settings() -> IdentitySettings:
    """The settings, or a clear message and exit 2 (a missing key never falls back)."""
    try:
        return IdentitySettings()
    except ValidationError as error:
        for problem in error.errors():
            print(f"identity: configuration error: {problem['msg']}", file=sys.stderr)
        sys.exit(2)


async def _serve() -> None:
    service = await build(_settings())
    subscribe(service.stream, service.identity)
    await serve_service(service, create_app)


async def _rotate() -> None:
    service = await build(_settings())
    try:
        outcome = await service.transactions.execute(
            service.identity.rotate_signing_key, c.RotateSigningKey()
        )
        print(f"signing with {outcome.data['kid']}")
    finally:
        await service.close()


async def _create_operator(username: str, password: str, totp_secret: str | None) -> int:
    service = await build(_settings())
    try:
        outcome = await service.transactions.execute(
            service.identity.create_operator, c.CreateOperator(username, password, totp_secret)
        )
    except IdentityError as error:
        print(f"refused: {error.detail}", file=sys.stderr)
        return 1
    finally:
        await service.close()
    data = outcome.data
    print(f"operator {data['username']} ({data['operator_id']})")
    print(f"totp secret: {data['totp_secret']}")
    print(f"authenticator: {provisioning_uri(str(data['totp_secret']), str(data['username']))}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="identity", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve")
    commands.add_parser("rotate-key")
    operator = commands.add_parser(
        "create-operator", help="an operator account (password from standard input)"
    )
    operator.add_argument("username")
    operator.add_argument("--totp-secret", help="base32 secret to use (default: a new random one)")
    args = parser.parse_args()
    match args.command:
        case "serve":
            asyncio.run(_serve())
        case "rotate-key":
            asyncio.run(_rotate())
        case "create-operator":
            password = sys.stdin.readline().rstrip("\n")
            sys.exit(asyncio.run(_create_operator(args.username, password, args.totp_secret)))
