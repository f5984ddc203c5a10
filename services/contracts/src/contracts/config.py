"""Settings of the contracts service (PORTAL_* environment variables)."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, SecretStr, model_validator
from servicekit.settings import ServiceSettings


class ContractsSettings(ServiceSettings):
    service_name: str = "contracts"
    http_port: int = 8001
    # CT-5: product line -> earns loyalty points; overrides the catalogue's defaults.
    point_relevance: dict[str, bool] = Field(default_factory=dict)
    # ID-6/CT-4: identity's internal mTAN API, called as the system `identity_system`
    # (identity grants it the operation `mtan`). Without a base URL no bank details can be
    # changed (every change is refused, no mTAN is sent: 503).
    identity_base_url: str | None = None
    identity_system: str = "contracts"
    identity_secret: SecretStr | None = None
    identity_timeout_seconds: PositiveFloat = 5.0

    @model_validator(mode="after")
    def _identity_needs_its_secret(self) -> ContractsSettings:
        if self.identity_base_url and not self.identity_secret:
            raise ValueError("identity_base_url needs identity_secret (PORTAL_IDENTITY_SECRET)")
        return self
