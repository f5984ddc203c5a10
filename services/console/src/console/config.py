"""Settings of the console (PORTAL_* environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from servicekit.settings import ServiceSettings

DEFAULT_SERVICES = {
    "gateway": "http://127.0.0.1:8000",
    "contracts": "http://127.0.0.1:8001",
    "loyalty": "http://127.0.0.1:8002",
    "notifier": "http://127.0.0.1:8003",
    "identity": "http://127.0.0.1:8004",
    "claims": "http://127.0.0.1:8005",
    "documents": "http://127.0.0.1:8006",
}


class ConsoleSettings(ServiceSettings):
    service_name: str = "console"
    http_port: int = 8010
    # Operator tokens (identity: `aud` portal-operators, `role` operator, second factor);
    # `token_audience` stays the customers' audience: such a token is recognised and refused.
    operator_audience: str = "portal-operators"
    # PORTAL_SERVICES: service name -> base URL (health, version, internal operator routes).
    services: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SERVICES))
    prometheus_url: str | None = None
    # PORTAL_PROMETHEUS_QUERIES: figure name -> PromQL, overriding console.handlers' defaults.
    prometheus_queries: dict[str, str] = Field(default_factory=dict)
    # The console calls loyalty's jobs and the notifier's replays as this internal system.
    operator_system: str = "operators"
    operator_secret: SecretStr = SecretStr("")
    # JSON lines of finished spans (see console.adapters.traces); unset: no trace lookup.
    trace_file: Path | None = None
    cookie_secure: bool = False  # behind TLS in production: True
    refresh_seconds: int = Field(default=5, ge=1)

    @property
    def identity_url(self) -> str:
        return self.services.get("identity", DEFAULT_SERVICES["identity"])
