"""No development keys in the source: identity refuses to start without its keys, with a
message that names them (and never falls back to a published key)."""

from __future__ import annotations

import base64
import os

import pytest
from identity.config import IdentitySettings
from pydantic import ValidationError


def key(size: int = 32) -> str:
    return base64.urlsafe_b64encode(os.urandom(size)).decode().rstrip("=")


@pytest.fixture(autouse=True)
def no_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTAL_DATA_KEY", raising=False)
    monkeypatch.delenv("PORTAL_CODE_PEPPER", raising=False)


def test_missing_keys_fail_at_start_and_name_the_setting() -> None:
    with pytest.raises(ValidationError) as refused:
        IdentitySettings()
    message = str(refused.value)
    assert "PORTAL_DATA_KEY is not set" in message
    assert "PORTAL_CODE_PEPPER is not set" in message


@pytest.mark.parametrize(
    ("data_key", "pepper", "named"),
    [
        (key(16), key(), "PORTAL_DATA_KEY has 16 bytes"),
        (key(), key(8), "PORTAL_CODE_PEPPER has 8 bytes"),
        ("%%%", key(), "PORTAL_DATA_KEY"),
    ],
)
def test_malformed_keys_are_refused(data_key: str, pepper: str, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        IdentitySettings(data_key=data_key, code_pepper=pepper)


def test_keys_given_explicitly_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    data_key, pepper = key(), key(48)
    monkeypatch.setenv("PORTAL_DATA_KEY", data_key)
    monkeypatch.setenv("PORTAL_CODE_PEPPER", pepper)
    settings = IdentitySettings()
    assert settings.data_key_bytes() == base64.urlsafe_b64decode(data_key + "=")
    assert len(settings.code_pepper_bytes()) == 48
