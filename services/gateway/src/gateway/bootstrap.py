"""The one place that wires the gateway: route table, upstream clients, token verifier,
rate limits and the combined OpenAPI description. No database, no broker."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from servicekit.auth import JwksUrlKeys, KeySource, StaticKeys, TokenVerifier
from servicekit.clock import SystemClock
from servicekit.http import ProblemDetails
from servicekit.logging import configure_logging
from servicekit.tracing import configure_tracing

from gateway.adapters.balancer import address
from gateway.adapters.ratelimit import RateLimits, Storage, redis_storage
from gateway.adapters.upstreams import (
    OpenApiDocuments,
    balanced_transport,
    skip_sniffio_lookups,
    upstream_client,
)
from gateway.config import GatewaySettings
from gateway.domain.openapi import Document, combine
from gateway.domain.routing import RouteTable, Upstream


@dataclass
class CombinedOpenApi:
    """The combined description, rebuilt when an upstream's document changed."""

    sources: OpenApiDocuments
    routes: RouteTable
    _built: Document | None = None
    _version: int = -1
    _problem_schemas: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
        self._problem_schemas = {**schema.pop("$defs", {}), "ProblemDetails": schema}

    async def document(self) -> Document:
        documents = await self.sources.documents()
        if self._built is None or self._version != self.sources.version:
            built = combine(
                documents,
                keep=lambda service, path: self.routes.routed(path, service),
                public=self.routes.is_public,
                problem_schemas=self._problem_schemas,
            )
            if not self.sources.complete:
                return built  # not cached: the missing services are asked again next time
            self._built, self._version = built, self.sources.version
        return self._built


@dataclass
class Gateway:
    settings: GatewaySettings
    routes: RouteTable
    clients: dict[str, httpx.AsyncClient]
    verifier: TokenVerifier
    limits: RateLimits
    openapi: CombinedOpenApi
    keys_client: httpx.AsyncClient

    async def close(self) -> None:
        # The key set's client may share identity's transport: closing it twice is fine.
        for client in (*self.clients.values(), self.keys_client):
            await client.aclose()


def build(
    settings: GatewaySettings,
    *,
    storage: Storage | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Gateway:
    """`storage` (MemoryStorage) and `transports` (upstream name -> ASGI transport) are
    for tests; by default Redis at PORTAL_REDIS_URL and real HTTP."""
    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name)
    transports = transports or {}
    skip_sniffio_lookups()
    unknown = set(settings.routes.values()) - set(settings.upstreams)
    if unknown:
        raise ValueError(f"routes name upstreams that are not configured: {sorted(unknown)}")
    routes = RouteTable(
        {prefix: Upstream(name, settings.upstreams[name].instances)
         for prefix, name in settings.routes.items()},
        public=settings.public_routes,
        blocked=settings.blocked_prefixes,
        uploads=settings.upload_routes,
    )  # fmt: skip
    used = sorted(set(settings.routes.values()))
    keys_from_identity = not settings.jwks and not settings.jwks_url
    if keys_from_identity and "identity" not in settings.upstreams:
        raise ValueError("no key set: configure jwks, jwks_url or an identity upstream")
    balanced = {
        name: balanced_transport(name, settings.upstreams[name], transports.get(name))
        for name in {*used, *(["identity"] if keys_from_identity else [])}
    }
    clients = {name: upstream_client(name, settings.upstreams[name], balanced[name])
               for name in used}  # fmt: skip
    keys_client = httpx.AsyncClient(
        timeout=5.0, trust_env=False,
        transport=balanced["identity"] if keys_from_identity else transports.get("identity"),
    )  # fmt: skip
    # Token lifetimes are security: the wall clock, never a test's business clock.
    wall_clock = SystemClock()
    keys: KeySource = (
        StaticKeys(json.loads(settings.jwks))
        if settings.jwks
        else JwksUrlKeys(
            settings.jwks_url or address("identity") + "/.well-known/jwks.json",
            keys_client, wall_clock,
        )
    )  # fmt: skip
    verifier = TokenVerifier(keys, wall_clock, settings.token_audience, settings.token_issuer)
    limits = RateLimits(
        storage if storage is not None else redis_storage(settings.redis_url),
        per_address=settings.rate_limit_per_address,
        per_account=settings.rate_limit_per_account,
        public_per_address=settings.rate_limit_public_per_address,
        namespace=settings.topic_prefix + settings.service_name,
    )
    documents = OpenApiDocuments(
        clients,
        {name: settings.upstreams[name].openapi_path for name in used},
        settings.openapi_cache_seconds,
    )
    return Gateway(
        settings, routes, clients, verifier, limits, CombinedOpenApi(documents, routes),
        keys_client,
    )  # fmt: skip
