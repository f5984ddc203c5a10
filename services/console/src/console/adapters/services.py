"""The console's HTTP clients: the services' health and version, loyalty's jobs route and
the notifier's dead letters (internal routes, as the `operators` system), and Prometheus's
HTTP API for the figures and charts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx
from servicekit.auth import basic_authorization


class UpstreamError(Exception):
    """A service answered with an error (the message carries its problem detail)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Health:
    service: str
    url: str
    status: str  # up | down | unreachable
    version: str | None
    detail: str = ""


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:300]
    return str(body)[:300]


class Services:
    def __init__(
        self, client: httpx.AsyncClient, urls: dict[str, str], system: str, secret: str
    ) -> None:
        self._client = client
        self.urls = urls
        self._authorization = basic_authorization(system, secret)

    async def health(self) -> list[Health]:
        return list(await asyncio.gather(*(self._health(s, u) for s, u in self.urls.items())))

    async def _health(self, service: str, url: str) -> Health:
        try:
            ready = await self._client.get(f"{url}/health/ready", timeout=2.0)
        except httpx.HTTPError as exc:
            return Health(service, url, "unreachable", None, type(exc).__name__)
        version = None
        try:
            info = await self._client.get(f"{url}/openapi.json", timeout=2.0)
            if info.status_code == 200:
                version = str(info.json().get("info", {}).get("version"))
        except (httpx.HTTPError, ValueError):
            pass
        status = "up" if ready.status_code == 200 else "down"
        failures = ready.json().get("failures", []) if ready.status_code == 503 else []
        return Health(service, url, status, version, ", ".join(map(str, failures)))

    async def _call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        url = self.urls.get(service)
        if url is None:
            raise UpstreamError(503, f"the console does not know where {service} runs")
        try:
            response = await self._client.request(
                method,
                f"{url}{path}",
                headers={"Authorization": self._authorization},
                timeout=60.0,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(503, f"{service} is not reachable ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise UpstreamError(response.status_code, _detail(response))
        return response.json()

    async def run_loyalty_job(self, kind: str, business_date: date) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST",
            "loyalty",
            f"/internal/loyalty/jobs/{kind}",
            params={"business_date": business_date.isoformat()},
        )
        return result

    async def notifier_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        body = await self._call(
            "GET", "notifier", "/internal/notifier/dead-letters", params={"limit": limit}
        )
        items = body.get("items", body) if isinstance(body, dict) else body
        return list(items)

    async def notifier_replay(self, message_key: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST",
            "notifier",
            f"/internal/notifier/deliveries/{quote(message_key, safe='')}/replay",
        )
        return result

    async def notifier_stats(self) -> Any:
        return await self._call("GET", "notifier", "/internal/notifier/stats")


class Prometheus:
    """Prometheus's HTTP API (`/api/v1/query`, `/api/v1/query_range`)."""

    def __init__(self, client: httpx.AsyncClient, url: str | None) -> None:
        self._client = client
        self.url = url.rstrip("/") if url else None

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector: [{"metric": {...}, "value": [ts, "v"]}]; [] when absent."""
        if not self.url:
            return []
        try:
            response = await self._client.get(
                f"{self.url}/api/v1/query", params={"query": expr}, timeout=5.0
            )
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return []
        return (
            list(body.get("data", {}).get("result", [])) if body.get("status") == "success" else []
        )

    async def query_range(
        self, expr: str, start: float, end: float, step: int
    ) -> list[dict[str, Any]]:
        if not self.url:
            return []
        try:
            response = await self._client.get(
                f"{self.url}/api/v1/query_range",
                params={"query": expr, "start": start, "end": end, "step": step},
                timeout=10.0,
            )
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return []
        return (
            list(body.get("data", {}).get("result", [])) if body.get("status") == "success" else []
        )


def _result(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or body.get("status") != "success":
        return []
    return list(body.get("data", {}).get("result", []))
