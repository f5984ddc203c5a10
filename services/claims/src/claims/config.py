"""Settings of the claims service (PORTAL_* environment variables)."""

from __future__ import annotations

from contracts_schemas.claims import ClaimType
from pydantic import Field
from servicekit.settings import ServiceSettings
from servicekit.uploads import DEFAULT_MAX_UPLOAD_BYTES

from claims.domain.lifecycle import DEFAULT_OVERDUE_EXTENSION, DEFAULT_SERVICE_LEVELS


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
    # CL-3: an overdue claim's date moves to this many working days after the day it was
    # found overdue; the slip job looks every `overdue_check_seconds` (on every instance
    # at once: each passed date is slipped and announced once).
    overdue_extension_days: int = Field(default=DEFAULT_OVERDUE_EXTENSION, ge=1)
    overdue_check_seconds: float = Field(default=300.0, gt=0)

    def levels(self) -> dict[ClaimType, int]:
        return {**DEFAULT_SERVICE_LEVELS, **self.service_levels}
