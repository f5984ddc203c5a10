"""The one place where the contracts service's adapters are wired to its handlers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from contracts_schemas import topics
from fastapi import FastAPI
from servicekit.clock import Clock
from servicekit.runner import Loop
from servicekit.runtime import Runtime

from contracts.adapters.mtan import MtanPort, NoMtanService
from contracts.adapters.policies import PolicyRepository
from contracts.config import ContractsSettings
from contracts.domain.catalogue import Catalogue
from contracts.handlers import Contracts

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
INGESTION_GROUP = "contracts.upstream-ingestion"
IDENTITY_GROUP = "contracts.identity"


@dataclass
class Service:
    runtime: Runtime
    contracts: Contracts
    http: httpx.AsyncClient

    def loops(self) -> list[Loop]:
        return [
            self.runtime.relay_loop(),
            self.runtime.consumer_loop(
                INGESTION_GROUP, [topics.UPSTREAM_CONTRACTS], self.contracts.ingest_batch
            ),
            self.runtime.consumer_loop(
                IDENTITY_GROUP, [topics.IDENTITY_CUSTOMER], self.contracts.record_identity
            ),
        ]

    async def close(self) -> None:
        await self.http.aclose()
        await self.runtime.close()


async def build(
    settings: ContractsSettings, clock: Clock | None = None, mtan: MtanPort | None = None
) -> Service:
    runtime = await Runtime.start(settings, MIGRATIONS, clock)
    catalogue = Catalogue.from_config(settings.point_relevance)
    contracts = Contracts(PolicyRepository(runtime.store), catalogue, mtan or NoMtanService())
    return Service(runtime, contracts, httpx.AsyncClient())


def create_http_app(service: Service) -> FastAPI:
    from contracts.entrypoints.api import register

    return service.runtime.http_app(service, register, customer_tokens=service.http)
