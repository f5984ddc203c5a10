"""Settings of the documents service (PORTAL_* environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from servicekit.settings import ServiceSettings
from servicekit.uploads import DEFAULT_MAX_UPLOAD_BYTES


class DocumentsSettings(ServiceSettings):
    service_name: str = "documents"
    http_port: int = 8006
    # Master keys (DOC-3): key id -> 32 bytes in URL-safe base64. Rotation: add a new key,
    # make it current, run `documents rotate-master-key`, then remove the old one.
    master_keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {"dev-1": SecretStr("ZGV2ZWxvcG1lbnQtb25seS1tYXN0ZXIta2V5LTMyYnk")}
    )
    master_key_id: str = "dev-1"
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, ge=1)
    max_upstream_document_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
