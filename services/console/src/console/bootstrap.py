"""The one place where the console's adapters are wired to its use cases."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from servicekit.auth import JwksUrlKeys, KeySource, StaticKeys
from servicekit.clock import SystemClock
from servicekit.db import create_pool, migrate, migrations_in
from servicekit.logging import configure_logging
from servicekit.runner import Loop
from servicekit.tracing import traced_client

from console.adapters.audit import Audit, PostgresAudit
from console.adapters.kafka import KafkaOps
from console.adapters.services import Prometheus, Services
from console.auth import OperatorVerifier
from console.config import ConsoleSettings
from console.handlers import DEFAULT_QUERIES, Console

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class Service:
    settings: ConsoleSettings
    console: Console
    verifier: OperatorVerifier
    http: httpx.AsyncClient
    pool: asyncpg.Pool | None

    def loops(self) -> list[Loop]:
        return []

    async def close(self) -> None:
        await self.console.kafka.close()
        await self.http.aclose()
        if self.pool is not None:
            await self.pool.close()

    async def database_ready(self) -> None:
        if self.pool is not None:
            async with self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")


def operator_verifier(settings: ConsoleSettings, http: httpx.AsyncClient) -> OperatorVerifier:
    """Identity's keys: PORTAL_JWKS (pinned) or else identity's JWKS URL."""
    wall = SystemClock()  # token lifetimes are security time, as in every verifier
    keys: KeySource
    if settings.jwks:
        keys = StaticKeys(json.loads(settings.jwks))
    else:
        url = settings.jwks_url or f"{settings.identity_url}/.well-known/jwks.json"
        keys = JwksUrlKeys(url, http, wall, min_refresh_seconds=5)
    return OperatorVerifier(
        keys, wall, settings.operator_audience, settings.token_audience, settings.token_issuer
    )


def wire(settings: ConsoleSettings, audit: Audit, http: httpx.AsyncClient) -> Console:
    return Console(
        kafka=KafkaOps(
            settings.kafka_bootstrap,
            settings.topic_prefix,
            f"console-{settings.instance_id or 'ops'}",
        ),
        services=Services(
            http,
            settings.services,
            settings.operator_system,
            settings.operator_secret.get_secret_value(),
        ),
        prometheus=Prometheus(http, settings.prometheus_url),
        audit=audit,
        trace_file=settings.trace_file,
        queries=DEFAULT_QUERIES | settings.prometheus_queries,
    )


async def build(settings: ConsoleSettings, log_stream: IO[str] | None = None) -> Service:
    configure_logging(settings.service_name, settings.log_level, log_stream)
    dsn = settings.database_url.get_secret_value()
    await migrate(dsn, settings.schema_name, migrations_in(MIGRATIONS))
    pool = await create_pool(dsn, settings.schema_name, settings.database_pool_max)
    http = traced_client()
    console = wire(settings, PostgresAudit(pool), http)
    return Service(settings, console, operator_verifier(settings, http), http, pool)
