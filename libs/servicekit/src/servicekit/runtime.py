"""What every service process is made of, wired the same way everywhere.

A service's bootstrap builds a `Runtime`: migrations applied, one pool, the event store,
the clock; from it come the service's transactions (its unit of work), its event stream
(FastStream broker, inbox subscribers, the outbox relay's producer) and its HTTP app.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import httpx
from contracts_schemas import topic_of
from contracts_schemas.base import Contract
from fastapi import FastAPI

from servicekit.auth import JwksUrlKeys, KeySource, ServiceCredentials, StaticKeys, TokenVerifier
from servicekit.clock import Clock, FileClock, SystemClock
from servicekit.db import Connection, create_pool, migrate, migrations_in
from servicekit.eventstore import EventStore
from servicekit.http import create_app
from servicekit.lag import lag_loop
from servicekit.logging import configure_logging, get_logger
from servicekit.outbox import RELAY_CONNECTIONS, OutboxRelay, relay_lock_key
from servicekit.permissions import SystemPermissions
from servicekit.postgres import postgres_transactions
from servicekit.runner import Loop, serve
from servicekit.settings import ServiceSettings
from servicekit.stream import EventStream
from servicekit.tracing import configure_tracing
from servicekit.unit_of_work import Transactions, UnitOfWork

log = get_logger(__name__)

U = TypeVar("U", bound=UnitOfWork)
RELAY_STOP_SECONDS = 35.0  # the producer's request timeout, and a little more


@dataclass
class Runtime:
    settings: ServiceSettings
    pool: asyncpg.Pool
    store: EventStore
    clock: Clock
    _relays_stopped: dict[int, list[asyncio.Event]] = field(default_factory=dict)

    @classmethod
    async def start(
        cls, settings: ServiceSettings, migrations: Path, clock: Clock | None = None
    ) -> Runtime:
        configure_logging(settings.service_name, settings.log_level)
        configure_tracing(settings.service_name)
        dsn = settings.database_url.get_secret_value()
        await migrate(dsn, settings.schema_name, migrations_in(migrations))
        pool = await create_pool(dsn, settings.schema_name, settings.database_pool_max)
        store = EventStore(f"/{settings.service_name}", topic_for=functools.partial(
            _prefixed_topic, settings.topic_prefix
        ))  # fmt: skip
        clock = clock or (FileClock(settings.clock_file) if settings.clock_file else SystemClock())
        return cls(settings, pool, store, clock)

    async def close(self) -> None:
        await self.pool.close()

    def topic(self, name: str) -> str:
        return self.settings.topic_prefix + name

    def transactions(self, unit_of_work: Callable[[Connection, EventStore], U]) -> Transactions[U]:
        """Transactions on this service's pool, each with a fresh `unit_of_work`."""
        return postgres_transactions(self.pool, lambda conn: unit_of_work(conn, self.store))

    def stream(self, transactions: Transactions[U]) -> EventStream[U]:
        return EventStream(self.settings, transactions)

    def event_loops(self, stream: EventStream[Any], *, relay: bool = True) -> list[Loop]:
        """A service's event side: the outbox relay (unless the service publishes no events
        of its own), the stream's subscribers and their consumer lag."""
        check_pool_size(
            self.settings.database_pool_max,
            len(stream.consumers) + (RELAY_CONNECTIONS if relay else 0),
        )
        loops = [self.stream_loop(stream), self.lag_loop(stream)]
        return [self.outbox_loop(stream), *loops] if relay else loops

    def stream_loop(self, stream: EventStream[Any]) -> Loop:
        """The broker's subscribers run from start until `stop`; the broker closes only
        after the stream's outbox relay stopped, so no publish waits on a closed producer."""

        async def consume(stop: asyncio.Event) -> None:
            await stream.start()
            try:
                await stop.wait()
            finally:
                relays = self._relays_stopped.get(id(stream), [])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.gather(*(r.wait() for r in relays)), RELAY_STOP_SECONDS
                    )
                await stream.close()

        return consume

    def outbox_loop(self, stream: EventStream[Any]) -> Loop:
        """The outbox relay, publishing through the stream's broker."""
        relay = OutboxRelay(
            self.pool,
            stream.publish,
            send=stream.send,
            lock_key=relay_lock_key(self.settings.schema_name),
            name=self.settings.schema_name,
            queued=self.store.queued,
        )
        stopped = asyncio.Event()
        self._relays_stopped.setdefault(id(stream), []).append(stopped)

        async def publish(stop: asyncio.Event) -> None:
            try:
                await relay.run(stop)
            finally:
                stopped.set()

        return publish

    def lag_loop(self, stream: EventStream[Any]) -> Loop:
        """OPS-2: the consumer lag of the stream's groups per partition, measured every 15 s
        (`servicekit.lag`). It begins once the stream started - its subscribers registered
        (`subscribe`) and its topics created, so every partition of them is measured."""
        measure = lag_loop(
            self.settings.kafka_bootstrap, stream, client_id=f"{self.settings.service_name}-lag"
        )

        async def consumer_lag(stop: asyncio.Event) -> None:
            started = asyncio.create_task(stream.started.wait())
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({started, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                started.cancel()
                stopping.cancel()
            if not stop.is_set():
                await measure(stop)

        return consumer_lag

    def token_verifier(self, client: httpx.AsyncClient) -> TokenVerifier:
        """Token lifetimes are security, not business: they run on the wall clock even
        where business time is moved (test environments)."""
        wall_clock = SystemClock()
        keys: KeySource
        if self.settings.jwks:
            keys = StaticKeys(json.loads(self.settings.jwks))
        elif self.settings.jwks_url:
            keys = JwksUrlKeys(self.settings.jwks_url, client, wall_clock)
        else:
            raise RuntimeError("set PORTAL_JWKS_URL (or PORTAL_JWKS) to verify customer tokens")
        return TokenVerifier(
            keys, wall_clock, self.settings.token_audience, self.settings.token_issuer
        )

    def service_credentials(self) -> ServiceCredentials:
        return ServiceCredentials(self.settings.service_credentials)

    def http_app(
        self,
        service: object,
        register: Callable[[FastAPI], None],
        customer_tokens: httpx.AsyncClient | None = None,
    ) -> FastAPI:
        """The service's FastAPI app: operators' endpoints take service credentials; with
        `customer_tokens` (the client that fetches the JWKS) customer endpoints take tokens."""
        app = create_app(self.settings.service_name, readiness=[self.database_ready])
        app.state.service = service
        app.state.service_credentials = self.service_credentials()
        app.state.system_permissions = SystemPermissions(self.settings.system_operations)
        if customer_tokens is not None:
            app.state.token_verifier = self.token_verifier(customer_tokens)
        register(app)
        return app

    async def database_ready(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")


class ServiceProcess(Protocol):
    runtime: Runtime

    def loops(self) -> list[Loop]: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=ServiceProcess)


#: The cyclic collector's first-generation threshold in a service process (Python's
#: default: 700). A consumer makes and drops about ten objects per event; at the default the
#: collector runs every ~70 events and walks the batches in flight each time - 7-23% of the
#: loyalty fold's CPU per event (bench fold, five runs). It stays on, only runs less often.
SERVICE_GC_THRESHOLD = 50_000


async def serve_service(service: S, http_app: Callable[[S], FastAPI]) -> None:
    """`<service> serve`: the HTTP API and the service's loops until SIGTERM; then close."""
    settings = service.runtime.settings
    try:
        app = http_app(service)
        # What start-up built (modules, the app, the service) lives as long as the process:
        # frozen, no full collection walks it again. Measured: a quarter of a consumer's
        # CPU went into collections walking start-up objects.
        gc.freeze()
        gc.set_threshold(SERVICE_GC_THRESHOLD, *gc.get_threshold()[1:])
        await serve(app, settings.http_host, settings.http_port, service.loops())
    finally:
        await service.close()


class PoolTooSmallError(ValueError):
    """The database pool cannot hold what the event side keeps plus one request."""


def check_pool_size(pool_max: int, kept: int) -> None:
    """The relay and every subscriber keep connections (the relay waits forever for a third
    one it never gets): the pool needs those plus one for the HTTP side, or the service
    would hang, not fail - refuse to start instead."""
    if pool_max < kept + 1:
        raise PoolTooSmallError(
            f"PORTAL_DATABASE_POOL_MAX is {pool_max}; this service keeps {kept} connections "
            f"(outbox relay and stream subscribers) and needs at least {kept + 1}"
        )


def _prefixed_topic(prefix: str, message: Contract) -> str:
    return prefix + topic_of(message)
