"""What the handlers need from cryptography, as protocols (adapters/security.py)."""

from __future__ import annotations

from typing import Any, Protocol


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool: ...

    def verify_dummy(self, password: str) -> None:
        """Same work as `verify` for a username that does not exist (ID-4)."""
        ...


class PasswordChecks(Protocol):
    def is_breached(self, password: str) -> bool: ...

    def strength(self, password: str, user_inputs: list[str]) -> int: ...


class Secrets(Protocol):
    def sms_code(self) -> str:
        """6 random digits."""
        ...

    def activation_code(self) -> str:
        """At least 40 random bits, never a valid password (shorter than 12 characters)."""
        ...

    def token(self) -> str:
        """A 256-bit URL-safe random token."""
        ...

    def new_id(self) -> str: ...

    def keyed_hash(self, value: str) -> str:
        """HMAC-SHA256 under the service's pepper: how codes and tokens are stored."""
        ...


class TokenSigner(Protocol):
    def new_key(self, kid: str) -> tuple[dict[str, str], dict[str, str]]:
        """A fresh key pair as (private JWK, public JWK)."""
        ...

    def sign(self, claims: dict[str, Any], private_jwk: dict[str, str]) -> str: ...


class DeviceSignatures(Protocol):
    def valid_public_key(self, public_key: bytes) -> bool: ...

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool: ...
