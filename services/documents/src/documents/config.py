"""Settings of the documents service (PORTAL_* environment variables).

`PORTAL_MASTER_KEYS` and `PORTAL_MASTER_KEY_ID` have no defaults: a master key published
in the source would protect nothing, so a missing or malformed key fails at start with a
message that names the setting (scripts/run-platform generates a development key in
.local/run/dev-keys.env).
"""

from __future__ import annotations

import binascii

from pydantic import Field, SecretStr, model_validator
from servicekit.settings import ServiceSettings
from servicekit.uploads import DEFAULT_MAX_UPLOAD_BYTES

from documents.adapters.vault import decode_key

_KEYS_HINT = (
    "PORTAL_MASTER_KEYS must be a JSON object of key id -> 32-byte key in URL-safe base64, "
    "PORTAL_MASTER_KEY_ID the id of the current one; there is no default"
)


class DocumentsSettings(ServiceSettings):
    service_name: str = "documents"
    http_port: int = 8006
    # Master keys (DOC-3): key id -> 32 bytes in URL-safe base64. Rotation: add a new key,
    # make it current, run `documents rotate-master-key`, then remove the old one.
    master_keys: dict[str, SecretStr] = Field(default_factory=dict)
    master_key_id: str | None = None
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, ge=1)
    max_upstream_document_bytes: int = Field(default=20 * 1024 * 1024, ge=1)

    @model_validator(mode="after")
    def _master_keys_are_given(self) -> DocumentsSettings:
        problem = _master_key_problem(self.master_keys, self.master_key_id)
        if problem:
            raise ValueError(f"{problem} ({_KEYS_HINT})")
        return self

    def master_key_bytes(self) -> dict[str, bytes]:
        """Every configured master key (checked at construction)."""
        return {k: decode_key(v.get_secret_value().strip()) for k, v in self.master_keys.items()}

    def current_master_key_id(self) -> str:
        assert self.master_key_id is not None  # checked at construction
        return self.master_key_id


def _master_key_problem(keys: dict[str, SecretStr], current: str | None) -> str | None:
    if not keys:
        return "PORTAL_MASTER_KEYS is not set"
    for key_id, value in keys.items():
        try:
            decode_key(value.get_secret_value().strip())
        except (binascii.Error, ValueError):
            return f"PORTAL_MASTER_KEYS: the key {key_id!r} is not 32 bytes of URL-safe base64"
    if not current:
        return "PORTAL_MASTER_KEY_ID is not set"
    if current not in keys:
        return f"PORTAL_MASTER_KEY_ID names {current!r}, which PORTAL_MASTER_KEYS does not hold"
    return None
