"""Settings shared by every service, read from PORTAL_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTAL_", extra="ignore")

    service_name: str = "service"
    database_url: SecretStr = SecretStr("postgresql://portal:portal@127.0.0.1:15432/portal")
    database_schema: str | None = None
    database_pool_max: int = Field(default=10, ge=1)
    kafka_bootstrap: str = "127.0.0.1:19092"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    jwks_url: str | None = None
    token_audience: str = "portal"  # noqa: S105 - an audience, not a secret
    token_issuer: str | None = None
    service_credentials: dict[str, SecretStr] = Field(default_factory=dict)
    log_level: str = "INFO"

    @property
    def schema_name(self) -> str:
        return self.database_schema or self.service_name
