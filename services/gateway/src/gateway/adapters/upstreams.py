"""HTTP clients of the upstream services, and their OpenAPI documents (fetched lazily,
cached)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from servicekit.logging import get_logger
from servicekit.metrics import counter, histogram_seconds

from gateway.adapters.balancer import BalancedTransport, address
from gateway.config import UpstreamSettings
from gateway.domain.openapi import Document

log = get_logger(__name__)

UPSTREAM_CALLS = counter(
    "portal_gateway_upstream_requests_total",
    "Requests the gateway forwarded, by upstream and outcome: the answer's status class "
    "(2xx..5xx) or timeout | unreachable | failed | too_large",
    ["upstream", "outcome"],
)
UPSTREAM_SECONDS = histogram_seconds(
    "portal_gateway_upstream_duration_seconds",
    "Time from forwarding a request until the upstream's answer began (or the call failed)",
    ["upstream"],
)
_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class UpstreamCall:
    """One forwarded request's metrics: started when made, ended once."""

    __slots__ = ("_started", "_upstream")

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._started = time.perf_counter()

    def answered(self, status: int) -> None:
        self.ended(_STATUS_CLASSES.get(status // 100, "failed"))

    def ended(self, outcome: str) -> None:
        UPSTREAM_SECONDS.labels(self._upstream).observe(time.perf_counter() - self._started)
        UPSTREAM_CALLS.labels(self._upstream, outcome).inc()


def skip_sniffio_lookups() -> None:
    """httpcore asks `import sniffio` on every request it sends (`current_async_library`)
    and falls back to asyncio when that fails. sniffio is not installed here, and a failed
    import is not cached: each one searched the whole sys.path again (about 0.7 ms, several
    times per proxied request - measured by bench/gateway.py). Marking the module absent
    makes the import fail at once, with the same outcome (asyncio)."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_POOL = httpx.Limits(
    # An idle connection is dropped well before the upstream's uvicorn closes it (5 s):
    # reusing one the upstream is closing at that moment answered a 502 (chaos run).
    max_connections=200,
    max_keepalive_connections=50,
    keepalive_expiry=2.0,
)


def balanced_transport(
    name: str, settings: UpstreamSettings, transport: httpx.AsyncBaseTransport | None = None
) -> BalancedTransport:
    """The upstream's instances, a connection pool each; `transport` (tests) stands for
    every instance."""

    def transport_for(url: str) -> httpx.AsyncBaseTransport:
        return transport or httpx.AsyncHTTPTransport(limits=_POOL, trust_env=False)

    return BalancedTransport(name, settings.instances, transport_for, settings.cooldown_seconds)


def upstream_client(
    name: str, settings: UpstreamSettings, transport: httpx.AsyncBaseTransport
) -> httpx.AsyncClient:
    """One client per upstream (addressed by its name, `transport` puts an instance in its
    place), with that upstream's timeouts. Never follows redirects (the client gets them)
    and ignores proxy settings of the environment."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout_seconds,
        read=settings.read_timeout_seconds,
        write=settings.read_timeout_seconds,
        pool=settings.connect_timeout_seconds,
    )
    return httpx.AsyncClient(
        base_url=address(name), timeout=timeout, follow_redirects=False, trust_env=False,
        transport=transport,
    )  # fmt: skip


@dataclass
class _Cached:
    document: Document
    fetched_at: float


class OpenApiDocuments:
    """Each upstream's `/openapi.json`, fetched when first asked for and again after
    `max_age_seconds`; a failed fetch keeps the last good copy (or leaves the service out
    until it answers)."""

    def __init__(
        self,
        clients: Mapping[str, httpx.AsyncClient],
        paths: Mapping[str, str],
        max_age_seconds: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self._paths = paths
        self._max_age = max_age_seconds
        self._now = now
        self._cache: dict[str, _Cached] = {}
        self._lock = asyncio.Lock()
        self.version = 0  # grows whenever a document changed

    async def documents(self) -> dict[str, Document]:
        async with self._lock:
            stale = [
                name for name in self._clients
                if name not in self._cache
                or self._now() - self._cache[name].fetched_at >= self._max_age
            ]  # fmt: skip
            fetched = await asyncio.gather(*(self._fetch(name) for name in stale))
            for name, document in zip(stale, fetched, strict=True):
                if document is None:
                    continue
                previous = self._cache.get(name)
                if previous is None or previous.document != document:
                    self.version += 1
                self._cache[name] = _Cached(document, self._now())
            return {n: self._cache[n].document for n in self._clients if n in self._cache}

    @property
    def complete(self) -> bool:
        return all(name in self._cache for name in self._clients)

    async def _fetch(self, name: str) -> dict[str, Any] | None:
        try:
            response = await self._clients[name].get(self._paths[name])
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("openapi_unavailable", upstream=name, error=type(exc).__name__)
            return None
        return document if isinstance(document, dict) else None
