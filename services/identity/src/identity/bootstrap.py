"""The one place where the identity service's adapters are wired to its handlers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from servicekit.clock import Clock, SystemClock
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.runner import Loop
from servicekit.runtime import Runtime
from servicekit.stream import EventStream
from servicekit.unit_of_work import Transactions

from identity.adapters.postgres import PostgresIdentityUnitOfWork
from identity.adapters.security import (
    Argon2Hasher,
    Ed25519Devices,
    Ed25519Signer,
    FieldCipher,
    LibraryPasswordChecks,
    RandomSecrets,
)
from identity.config import IdentitySettings
from identity.handlers import Identity, IdentityConfig

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class Service:
    runtime: Runtime
    identity: Identity
    transactions: Transactions[PostgresIdentityUnitOfWork]
    stream: EventStream[PostgresIdentityUnitOfWork]
    settings: IdentitySettings

    def loops(self) -> list[Loop]:
        return [
            *self.runtime.event_loops(self.stream),
        ]

    async def close(self) -> None:
        await self.runtime.close()


def handlers(settings: IdentitySettings, clock: Clock, wall: Clock) -> Identity:
    return Identity(
        clock=clock, wall=wall,
        hasher=Argon2Hasher(settings.argon2_memory_kib, settings.argon2_time_cost,
                            settings.argon2_parallelism),
        checks=LibraryPasswordChecks(),
        secrets=RandomSecrets(settings.code_pepper_bytes()),
        signer=Ed25519Signer(), device_signatures=Ed25519Devices(),
        config=IdentityConfig(
            issuer=settings.token_issuer, audience=settings.token_audience,
            access_token_ttl=timedelta(minutes=settings.access_token_minutes),
            key_rotation=timedelta(days=settings.key_rotation_days),
            reset_url=settings.reset_url,
        ),
    )  # fmt: skip


async def build(
    settings: IdentitySettings, clock: Clock | None = None, wall: Clock | None = None
) -> Service:
    """`clock`: business time (default the runtime's); `wall`: security time - tokens,
    sessions, codes, throttles - the system clock unless a test passes one it controls."""
    runtime = await Runtime.start(settings, MIGRATIONS, clock)
    cipher = FieldCipher(settings.data_key_bytes())

    def unit_of_work(conn: Connection, store: EventStore) -> PostgresIdentityUnitOfWork:
        return PostgresIdentityUnitOfWork(conn, store, cipher)

    transactions = runtime.transactions(unit_of_work)
    # Tokens, sessions, codes and throttles run on the wall clock, as verifiers do.
    identity = handlers(settings, runtime.clock, wall or SystemClock())
    return Service(runtime, identity, transactions, runtime.stream(transactions), settings)
