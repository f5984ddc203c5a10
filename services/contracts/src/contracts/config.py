"""Settings of the contracts service (PORTAL_* environment variables)."""

from __future__ import annotations

from pydantic import Field
from servicekit.settings import ServiceSettings


class ContractsSettings(ServiceSettings):
    service_name: str = "contracts"
    http_port: int = 8001
    # CT-5: product line -> earns loyalty points; overrides the catalogue's defaults.
    point_relevance: dict[str, bool] = Field(default_factory=dict)
