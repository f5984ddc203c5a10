"""Why the claims service refuses something. `detail` is German: customers read it."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    NOT_FOUND = "not-found"
    CONTRACT_NOT_FOUND = "contract-not-found"
    WRONG_CLAIM_TYPE = "wrong-claim-type"
    NOT_COVERED = "not-covered"
    INVALID = "invalid"
    IDEMPOTENCY_KEY_REUSED = "idempotency-key-reused"
    ILLEGAL_TRANSITION = "illegal-transition"
    NOT_TRACKED = "not-tracked"
    CLAIM_CLOSED = "claim-closed"
    UPLOAD_REFUSED = "upload-refused"


class ClaimsError(Exception):
    def __init__(
        self,
        reason: Reason,
        detail: str,
        *,
        status: int | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status
        self.extensions = dict(extensions or {})
