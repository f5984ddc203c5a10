"""The one place where the contracts service's adapters are wired to its handlers.

Never imports an entrypoint: `entrypoints.cli` builds the service here, subscribes its
stream handlers (`entrypoints.stream.subscribe`) and serves `entrypoints.api.create_app`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from servicekit.clock import Clock, SystemClock
from servicekit.runner import Loop
from servicekit.runtime import Runtime
from servicekit.stream import EventStream
from servicekit.tracing import traced_client
from servicekit.unit_of_work import Transactions

from contracts.adapters.mtan import (
    IdentityApiSettings,
    IdentityMtanService,
    MtanPort,
    NoMtanService,
)
from contracts.adapters.postgres import PostgresContractsUnitOfWork
from contracts.adapters.states import PolicyStates
from contracts.config import ContractsSettings
from contracts.domain.catalogue import Catalogue
from contracts.handlers import Contracts

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class Service:
    runtime: Runtime
    transactions: Transactions[PostgresContractsUnitOfWork]
    stream: EventStream[PostgresContractsUnitOfWork]
    contracts: Contracts
    http: httpx.AsyncClient

    def loops(self) -> list[Loop]:
        """The outbox relay and the stream's subscribers (`entrypoints.stream.subscribe`)."""
        return [
            *self.runtime.event_loops(self.stream),
        ]

    async def close(self) -> None:
        await self.http.aclose()
        await self.runtime.close()


async def build(
    settings: ContractsSettings, clock: Clock | None = None, mtan: MtanPort | None = None
) -> Service:
    runtime = await Runtime.start(settings, MIGRATIONS, clock)
    states = PolicyStates()  # shared by the transactions: each folds only what is new
    transactions = runtime.transactions(
        lambda conn, store: PostgresContractsUnitOfWork(conn, store, states)
    )
    http = traced_client()
    # mTANs are security time: identity confirms them on the wall clock (ID-6).
    wall = SystemClock()
    contracts = Contracts(
        Catalogue.from_config(settings.point_relevance),
        mtan or mtan_port(settings, http),
        runtime.clock,
        wall,
    )
    return Service(runtime, transactions, runtime.stream(transactions), contracts, http)


def mtan_port(settings: ContractsSettings, http: httpx.AsyncClient) -> MtanPort:
    """identity's mTAN API when configured; else nothing is ever confirmed."""
    if not settings.identity_base_url or settings.identity_secret is None:
        return NoMtanService()
    api = IdentityApiSettings(
        settings.identity_base_url, settings.identity_system,
        settings.identity_secret.get_secret_value(), settings.identity_timeout_seconds,
    )  # fmt: skip
    return IdentityMtanService(http, api)
