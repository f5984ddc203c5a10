"""Settings of the gateway (PORTAL_* environment variables).

The gateway has no database and no broker: of `ServiceSettings` it uses the HTTP address,
the token audience/issuer, the JWKS (URL or inline) and logging. Maps are JSON in the
environment, e.g. `PORTAL_UPSTREAMS='{"contracts": {"url": "http://10.0.0.5:8001"}}'`, or
with several instances of an upstream that the gateway spreads its requests over:
`PORTAL_UPSTREAMS='{"contracts": {"urls": ["http://10.0.0.5:8001", "http://10.0.0.6:8001"]}}'`.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator
from servicekit.settings import ServiceSettings


class UpstreamSettings(BaseModel):
    """One upstream service: where its instances answer and how long the gateway waits
    for them. `url` names one instance, `urls` several (exactly one of the two)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(default=None, description="Base URL, e.g. http://127.0.0.1:8001")
    urls: tuple[str, ...] = Field(
        default=(), description="Base URLs of several instances, spread over (least in flight)"
    )
    connect_timeout_seconds: PositiveFloat = 2.0
    # Until the response's headers (and between two chunks of its body) arrive.
    read_timeout_seconds: PositiveFloat = 10.0
    # An instance that refused a connection (or did not accept one in time) gets no
    # requests for this long; then the next request tries it again.
    cooldown_seconds: PositiveFloat = 5.0
    openapi_path: str = "/openapi.json"

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if (self.url is None) == (not self.urls):
            raise ValueError("an upstream names either `url` or a non-empty `urls`")
        return self

    @property
    def instances(self) -> tuple[str, ...]:
        """Every instance's base URL (one for the `url` form)."""
        return (self.url,) if self.url is not None else self.urls


# Identity's routes that a customer calls before having a token (ID-1, ID-4, ID-5, ID-7)
# and the key set every service verifies tokens with.
PUBLIC_ROUTES = (
    "POST /identity/registrations",
    "POST /identity/login",
    "POST /identity/login/sms",
    "POST /identity/login/device-challenge",
    "POST /identity/token/refresh",
    "POST /identity/logout",
    "POST /identity/recovery/username",
    "POST /identity/recovery/password",
    "POST /identity/recovery/password/reset",
    "GET /.well-known/jwks.json",
)

# Routes that take files ("METHOD /path", `*` one segment): the larger body limit
# (claims' attachments CL-1/CL-2, documents for a waiting claim, secure messages DOC-2).
UPLOAD_ROUTES = (
    "POST /claims",
    "POST /claims/*/documents",
    "POST /messages",
)

# Never forwarded, whatever the route table says: upstream systems' and operators'
# endpoints (operators log in at the console, never through the customers' door),
# metrics, AsyncAPI/OpenAPI documents and health checks of the services.
BLOCKED_PREFIXES = (
    "/internal",
    "/identity/operators",
    "/metrics",
    "/asyncapi",
    "/health",
    "/openapi.json",
    "/docs",
    "/redoc",
)


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    http_port: int = 8000
    # upstream name -> where it answers
    upstreams: dict[str, UpstreamSettings] = Field(
        default_factory=lambda: {
            "identity": UpstreamSettings(url="http://127.0.0.1:8004"),
            "contracts": UpstreamSettings(url="http://127.0.0.1:8001"),
            "loyalty": UpstreamSettings(url="http://127.0.0.1:8002"),
            "claims": UpstreamSettings(url="http://127.0.0.1:8005"),
            "documents": UpstreamSettings(url="http://127.0.0.1:8006"),
        }
    )
    # path prefix (a whole segment: "/contracts" routes "/contracts" and "/contracts/...",
    # never "/contractsX") -> upstream name; the path is forwarded unchanged.
    routes: dict[str, str] = Field(
        default_factory=lambda: {
            "/identity": "identity",
            "/.well-known/jwks.json": "identity",
            "/contracts": "contracts",
            "/loyalty": "loyalty",
            "/claims": "claims",
            "/documents": "documents",
            "/messages": "documents",
        }
    )
    # "METHOD /path" (exact path) reachable without an access token
    public_routes: list[str] = Field(default_factory=lambda: list(PUBLIC_ROUTES))
    blocked_prefixes: list[str] = Field(default_factory=lambda: list(BLOCKED_PREFIXES))
    # The JWKS to verify tokens with; by default identity's, from any of its instances.
    jwks_url: str | None = None

    # Rate limits (the `limits` library's notation, moving windows), shared by every
    # gateway instance through Redis.
    redis_url: str = "redis://127.0.0.1:16379/0"
    rate_limit_per_address: str = "600/minute"
    rate_limit_per_account: str = "300/minute"
    # Routes without a token (login, registration, recovery) cost attackers nothing else.
    rate_limit_public_per_address: str = "60/minute"

    max_request_bytes: PositiveInt = 1_048_576
    # On the upload routes: the services take files of up to 10 MiB each (and refuse a
    # larger one themselves with a problem); the gateway bounds the whole request.
    upload_routes: list[str] = Field(default_factory=lambda: list(UPLOAD_ROUTES))
    max_upload_request_bytes: PositiveInt = 32 * 1_048_576
    # Requests from these peers may name the client in X-Forwarded-For (a load balancer
    # in front of the gateway); everybody else is the client themself.
    trusted_proxies: list[str] = Field(default_factory=list)
    openapi_cache_seconds: PositiveFloat = 60.0
    # The gateway's own /metrics (OPS-2) on a port of its own, never on the customers'
    # door (there `/metrics` is 404 like every internal path); unset: not served.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
