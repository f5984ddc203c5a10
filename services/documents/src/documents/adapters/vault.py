"""AES-256-GCM envelope encryption (DOC-3) with `cryptography`.

Each blob gets a fresh 256-bit data key; the content is encrypted with it (96-bit random
nonce, the blob id as associated data, so a ciphertext cannot be moved to another blob).
The data key is wrapped with AES-256-GCM by a master key that has an id (associated data:
the blob id and the key id). Rotating the master key re-wraps the data keys and never
touches a ciphertext; a data key wrapped by a master key that is no longer configured
cannot be opened, so old keys are removed from the configuration only after a rotation.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from documents.ports import DataKey, SealedBlob

_NONCE = 12


class UnknownMasterKey(Exception):
    """The data key was wrapped by a master key that is not configured."""


def decode_key(text: str) -> bytes:
    """A 32-byte key from URL-safe base64 (padding optional)."""
    key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(key) != 32:
        raise ValueError("a master key must be 32 bytes (AES-256)")
    return key


class AesGcmVault:
    def __init__(self, master_keys: Mapping[str, bytes], current_key_id: str) -> None:
        if current_key_id not in master_keys:
            raise ValueError(f"the current master key {current_key_id!r} is not configured")
        for key_id, key in master_keys.items():
            if len(key) != 32:
                raise ValueError(f"master key {key_id!r} must be 32 bytes (AES-256)")
        self._masters = {key_id: AESGCM(key) for key_id, key in master_keys.items()}
        self._current = current_key_id

    @property
    def current_key_id(self) -> str:
        return self._current

    def seal(self, blob_id: str, content_type: str, plaintext: bytes) -> SealedBlob:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, blob_id.encode())
        return SealedBlob(blob_id, content_type, ciphertext, self._wrap(blob_id, data_key))

    def open(self, sealed: SealedBlob) -> bytes:
        data_key = self._unwrap(sealed.key)
        nonce, body = sealed.ciphertext[:_NONCE], sealed.ciphertext[_NONCE:]
        return AESGCM(data_key).decrypt(nonce, body, sealed.blob_id.encode())

    def rewrap(self, key: DataKey) -> DataKey:
        if key.key_id == self._current:
            return key
        return self._wrap(key.blob_id, self._unwrap(key))

    def _wrap(self, blob_id: str, data_key: bytes) -> DataKey:
        nonce = os.urandom(_NONCE)
        aad = _key_aad(blob_id, self._current)
        wrapped = nonce + self._masters[self._current].encrypt(nonce, data_key, aad)
        return DataKey(blob_id, self._current, wrapped)

    def _unwrap(self, key: DataKey) -> bytes:
        master = self._masters.get(key.key_id)
        if master is None:
            raise UnknownMasterKey(key.key_id)
        nonce, body = key.wrapped_key[:_NONCE], key.wrapped_key[_NONCE:]
        return master.decrypt(nonce, body, _key_aad(key.blob_id, key.key_id))


def _key_aad(blob_id: str, key_id: str) -> bytes:
    return f"data-key\x1f{blob_id}\x1f{key_id}".encode()
