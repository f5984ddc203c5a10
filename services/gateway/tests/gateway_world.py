"""Helpers of the gateway's tests: tokens good and bad, small upstream apps, a gateway
wired to them in-process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from gateway.adapters.ratelimit import memory_storage
from gateway.bootstrap import Gateway, build
from gateway.config import GatewaySettings, UpstreamSettings
from gateway.entrypoints.api import create_app
from servicekit.auth import StaticKeys, TokenVerifier, generate_signing_key, mint_token
from servicekit.clock import SystemClock
from servicekit.http import CurrentCustomer
from servicekit.http import create_app as service_app

KID = "gateway-test"
PRIVATE, JWKS = generate_signing_key(KID)


def token(
    subject: str = "anna", *, expires_in: timedelta = timedelta(minutes=10), **kw: Any
) -> str:
    return mint_token(PRIVATE, subject, "portal", datetime.now(UTC) + expires_in, **kw)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(subject: str) -> dict[str, Any]:
    expires = int((datetime.now(UTC) + timedelta(minutes=10)).timestamp())
    return {"sub": subject, "aud": "portal", "iss": "portal-identity", "exp": expires}


def unsigned_token(subject: str = "anna") -> str:
    """`alg: none`: no signature at all."""
    header = _b64(json.dumps({"alg": "none", "kid": KID, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(_claims(subject)).encode())}."


def hs256_with_public_key(subject: str = "anna") -> str:
    """The classic confusion: HMAC keyed with the published public key."""
    secret = json.dumps(JWKS["keys"][0], sort_keys=True).encode()
    header = _b64(json.dumps({"alg": "HS256", "kid": KID, "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims(subject)).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def forged_token(subject: str = "anna") -> str:
    """Signed by another key that claims our key's id."""
    other, _ = generate_signing_key(KID)
    return mint_token(other, subject, "portal", datetime.now(UTC) + timedelta(minutes=10))


def echo_app(name: str) -> FastAPI:
    """A stand-in upstream built like the services (servicekit's app): a customer route
    that needs a token, one that echoes what arrived, an internal one, and a broken one."""
    app = service_app(name)
    app.state.token_verifier = TokenVerifier(StaticKeys(JWKS), SystemClock(), "portal")
    customer = APIRouter(prefix=f"/{name}", tags=["customers"])

    @customer.get("/echo/{rest:path}")
    async def echo_get(rest: str, request: Request) -> JSONResponse:
        return await echo(request)

    @customer.post("/echo/{rest:path}")
    async def echo_post(rest: str, request: Request) -> JSONResponse:
        return await echo(request)

    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {
                "upstream": name, "method": request.method, "path": request.url.path,
                "query": request.url.query, "body": body.decode(errors="replace"),
                "headers": dict(request.headers),
            },
            headers={"X-Upstream": name, "Connection": "close, X-Secret-Hop",
                     "X-Secret-Hop": "1", "Set-Cookie": "a=1"},
        )  # fmt: skip

    @customer.get("/plain-error")
    async def plain_error() -> PlainTextResponse:
        return PlainTextResponse("boom", status_code=500)

    @customer.get("/me")
    async def me(principal: CurrentCustomer) -> dict[str, str]:
        return {"customer": principal.customer_id}

    @app.post(f"/internal/{name}/jobs")
    async def internal_job() -> dict[str, str]:
        return {"ran": "yes"}

    app.include_router(customer)
    return app


def identity_keys_app() -> FastAPI:
    """Identity's key set, and a public login route."""
    app = service_app("identity")

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        app.state.fetches = getattr(app.state, "fetches", 0) + 1
        return JWKS

    @app.post("/identity/login")
    async def login(request: Request) -> dict[str, Any]:
        return {"forwarded_for": request.headers.get("x-forwarded-for")}

    @app.get("/identity/me")
    async def me() -> dict[str, str]:
        return {"me": "yes"}

    @app.post("/internal/identity/mtans")
    async def internal() -> dict[str, str]:
        return {"internal": "yes"}

    return app


@dataclass
class World:
    gateway: Gateway
    http: httpx.AsyncClient
    upstreams: Mapping[str, FastAPI]


def settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "upstreams": {
            "identity": UpstreamSettings(url="http://identity"),
            "contracts": UpstreamSettings(url="http://contracts"),
            "loyalty": UpstreamSettings(url="http://loyalty"),
        },
        "routes": {
            "/identity": "identity",
            "/.well-known/jwks.json": "identity",
            "/contracts": "contracts",
            "/loyalty": "loyalty",
        },
        "rate_limit_per_address": "1000/minute",
        "rate_limit_per_account": "1000/minute",
        "rate_limit_public_per_address": "1000/minute",
        "max_request_bytes": 1024,
    }
    return GatewaySettings(**(values | overrides))


@asynccontextmanager
async def gateway_world(
    upstreams: Mapping[str, FastAPI] | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    client: str = "203.0.113.7",
    instances: Mapping[str, tuple[str, ...]] | None = None,
    **overrides: Any,
) -> AsyncIterator[World]:
    """The gateway in-process, its upstreams ASGI apps (unit tests: MemoryStorage);
    `instances`: upstream name -> its instances' URLs (a `ByHost` transport tells them
    apart)."""
    apps = dict(upstreams) if upstreams is not None else {
        "identity": identity_keys_app(), "contracts": echo_app("contracts"),
        "loyalty": echo_app("loyalty"),
    }  # fmt: skip
    wired: dict[str, httpx.AsyncBaseTransport] = {
        name: httpx.ASGITransport(app=app) for name, app in apps.items()
    }
    wired.update(transports or {})
    configured = settings(**overrides)
    if instances:
        several = {name: UpstreamSettings(urls=urls) for name, urls in instances.items()}
        configured = settings(**overrides, upstreams={**configured.upstreams, **several})
    gateway = build(configured, storage=memory_storage(), transports=wired)
    transport = httpx.ASGITransport(app=create_app(gateway), client=(client, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        try:
            yield World(gateway, http, apps)
        finally:
            await gateway.close()


class ByHost(httpx.AsyncBaseTransport):
    """The instances of one upstream, told apart by the host of their URL (the gateway
    puts the chosen instance's host in each request); counts what each was sent. A host
    in `refusing` is down: it refuses the connection before any of the request is sent."""

    def __init__(
        self, instances: Mapping[str, httpx.AsyncBaseTransport], refusing: tuple[str, ...] = ()
    ) -> None:
        self.instances = instances
        self.refusing = refusing
        self.sent: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent[request.url.host] += 1
        if request.url.host in self.refusing:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.instances[request.url.host].handle_async_request(request)


def echo(request: httpx.Request) -> httpx.Response:
    """A fake instance's answer: what arrived (method, path, body, host)."""
    return httpx.Response(200, json={
        "method": request.method, "path": request.url.path, "host": request.url.host,
        "body": request.content.decode(),
    })  # fmt: skip


def break_exchange(request: httpx.Request) -> httpx.Response:
    """The request arrived (its body read), then the connection closed without an answer."""
    raise httpx.RemoteProtocolError("server disconnected", request=request)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` on a real socket (uvicorn, in this process); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def slow_app(seconds: float) -> FastAPI:
    """An upstream that takes `seconds` to answer."""
    app = service_app("loyalty")

    @app.get("/loyalty/statement")
    async def statement() -> dict[str, str]:
        await asyncio.sleep(seconds)
        return {"late": "yes"}

    return app


def keys_app(jwks: Mapping[str, Any]) -> FastAPI:
    """Identity's key set only (the harness' keys)."""
    app = service_app("identity")

    @app.get("/.well-known/jwks.json")
    async def keys() -> Mapping[str, Any]:
        return jwks

    return app


def instance_app(name: str, instance: str) -> FastAPI:
    """One instance of upstream `name` that says which instance answered (the real-process
    test runs two: `python gateway_world.py NAME INSTANCE PORT`)."""
    app = service_app(name)

    @app.get(f"/{name}/whoami")
    async def whoami() -> dict[str, str]:
        return {"instance": instance}

    @app.post(f"/{name}/orders", status_code=201)
    async def order(request: Request) -> dict[str, str]:
        return {"instance": instance, "body": (await request.body()).decode()}

    return app


if __name__ == "__main__":
    import sys

    NAME, INSTANCE, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uvicorn.run(
        instance_app(NAME, INSTANCE), host="127.0.0.1", port=PORT, log_config=None,
        access_log=False,
    )  # fmt: skip
