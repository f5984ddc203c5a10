"""What the handlers need besides the unit of work: sealing content at rest (DOC-3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DataKey:
    """A document's own AES-256 key, wrapped (encrypted) by the master key `key_id`."""

    blob_id: str
    key_id: str
    wrapped_key: bytes


@dataclass(frozen=True, slots=True)
class SealedBlob:
    """Content as it is stored: ciphertext (nonce first) and its wrapped data key."""

    blob_id: str
    content_type: str
    ciphertext: bytes
    key: DataKey


class Vault(Protocol):
    """Envelope encryption: a fresh data key per blob, wrapped by a master key with an id.
    Rotation re-wraps data keys; the ciphertexts stay as they are."""

    @property
    def current_key_id(self) -> str: ...

    def seal(self, blob_id: str, content_type: str, plaintext: bytes) -> SealedBlob: ...

    def open(self, sealed: SealedBlob) -> bytes:
        """The plaintext; raises when the ciphertext or the key was tampered with."""
        ...

    def rewrap(self, key: DataKey) -> DataKey:
        """The same data key wrapped by the current master key."""
        ...
