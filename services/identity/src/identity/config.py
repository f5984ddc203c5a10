"""Settings of the identity service (PORTAL_* environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from servicekit.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    service_name: str = "identity"
    http_port: int = 8004
    # 32 bytes, URL-safe base64: AES-256-GCM key for personal data and private signing keys.
    data_key: SecretStr = SecretStr("ZGV2ZWxvcG1lbnQtb25seS1kYXRhLWtleS0zMmJ5dGU")
    # >= 32 bytes, URL-safe base64: HMAC pepper under which codes and tokens are stored.
    code_pepper: SecretStr = SecretStr("ZGV2ZWxvcG1lbnQtb25seS1jb2RlLXBlcHBlci0zMmJ5dGVz")
    argon2_memory_kib: int = Field(default=19_456, ge=19_456)
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1)
    access_token_minutes: int = Field(default=5, ge=1, le=15)
    key_rotation_days: int = Field(default=30, ge=1)
    reset_url: str = "https://portal.example/passwort-neu?token="
