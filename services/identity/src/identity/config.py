"""Settings of the identity service (PORTAL_* environment variables).

`PORTAL_DATA_KEY` and `PORTAL_CODE_PEPPER` have no defaults: a key published in the source
would protect nothing, so a missing or malformed key fails at start with a message that
names it (scripts/run-platform generates development keys in .local/run/dev-keys.env).
"""

from __future__ import annotations

import binascii

from pydantic import Field, SecretStr, model_validator
from servicekit.settings import ServiceSettings

from identity.adapters.security import decode_key


class IdentitySettings(ServiceSettings):
    service_name: str = "identity"
    http_port: int = 8004
    # 32 bytes, URL-safe base64: AES-256-GCM key for personal data and private signing keys.
    data_key: SecretStr | None = None
    # >= 32 bytes, URL-safe base64: HMAC pepper under which codes and tokens are stored.
    code_pepper: SecretStr | None = None
    argon2_memory_kib: int = Field(default=19_456, ge=19_456)
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1)
    access_token_minutes: int = Field(default=5, ge=1, le=15)
    key_rotation_days: int = Field(default=30, ge=1)
    reset_url: str = "https://portal.example/passwort-neu?token="
    # Peers (addresses or CIDR networks: the gateway, a load balancer) whose
    # X-Forwarded-For names the client for login throttling (ID-4); everybody else is
    # the client themself. Empty: the TCP peer always.
    trusted_proxies: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keys_are_given(self) -> IdentitySettings:
        problems = [
            problem
            for problem in (
                _key_problem(self.data_key, "PORTAL_DATA_KEY", "the AES-256-GCM data key", 32, 32),
                _key_problem(self.code_pepper, "PORTAL_CODE_PEPPER", "the code pepper", 32, None),
            )
            if problem
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def data_key_bytes(self) -> bytes:
        assert self.data_key is not None  # checked at construction
        return decode_key(self.data_key.get_secret_value())

    def code_pepper_bytes(self) -> bytes:
        assert self.code_pepper is not None  # checked at construction
        return decode_key(self.code_pepper.get_secret_value())


def _key_problem(
    value: SecretStr | None, env: str, what: str, least: int, most: int | None
) -> str | None:
    size = f"{least} bytes" if most == least else f"at least {least} bytes"
    hint = f"{env} must be {what}: {size}, URL-safe base64"
    if value is None or not value.get_secret_value().strip():
        return f"{env} is not set ({hint}; there is no default)"
    try:
        key = decode_key(value.get_secret_value().strip())
    except (binascii.Error, ValueError):
        return f"{env} is not valid base64 ({hint})"
    if len(key) < least or (most is not None and len(key) > most):
        return f"{env} has {len(key)} bytes ({hint})"
    return None
