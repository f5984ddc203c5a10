"""Settings of the claims service (PORTAL_* environment variables)."""

from __future__ import annotations

from contracts_schemas.claims import ClaimType
from pydantic import Field
from servicekit.settings import ServiceSettings
from servicekit.uploads import DEFAULT_MAX_UPLOAD_BYTES

from claims.domain.lifecycle import DEFAULT_SERVICE_LEVELS


class ClaimsSettings(ServiceSettings):
    service_name: str = "claims"
    http_port: int = 8005
    # CL-3: service level per claim type in German working days
    # (PORTAL_SERVICE_LEVELS='{"household": 10, ...}'; types not named keep the default).
    service_levels: dict[ClaimType, int] = Field(default_factory=dict)
    # CL-3: public holidays of this federal state too (ISO 3166-2 suffix, e.g. "NW");
    # unset: the nationwide German public holidays only.
    holiday_state: str | None = None
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, ge=1)

    def levels(self) -> dict[ClaimType, int]:
        return {**DEFAULT_SERVICE_LEVELS, **self.service_levels}
