"""DOC-3: the master keys that wrap every document's data key have no default - a key
published in the source would protect nothing. Without a valid configured key the service
does not start, and the message names the setting."""

from __future__ import annotations

import subprocess
import sys

import pytest
from documents.config import DocumentsSettings
from documents_world import KEY_1, KEY_2, key_text
from pydantic import ValidationError


@pytest.fixture(autouse=True)
def no_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTAL_MASTER_KEYS", raising=False)
    monkeypatch.delenv("PORTAL_MASTER_KEY_ID", raising=False)


def test_doc3_without_master_keys_the_settings_are_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationError, match="PORTAL_MASTER_KEYS is not set"):
        DocumentsSettings()


@pytest.mark.parametrize(
    ("keys", "current", "message"),
    [
        ({"k1": "c2hvcnQ"}, "k1", "the key 'k1' is not 32 bytes"),
        ({"k1": "not base64 at all!"}, "k1", "the key 'k1' is not 32 bytes"),
        ({"k1": key_text(KEY_1)}, None, "PORTAL_MASTER_KEY_ID is not set"),
        ({"k1": key_text(KEY_1)}, "k2", "PORTAL_MASTER_KEY_ID names 'k2'"),
    ],
)
def test_doc3_malformed_master_keys_are_refused_naming_the_setting(
    keys: dict[str, str], current: str | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        DocumentsSettings(master_keys=keys, master_key_id=current)


def test_doc3_configured_master_keys_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = f'{{"k1": "{key_text(KEY_1)}", "k2": "{key_text(KEY_2)}"}}'
    monkeypatch.setenv("PORTAL_MASTER_KEYS", keys)
    monkeypatch.setenv("PORTAL_MASTER_KEY_ID", "k2")
    settings = DocumentsSettings()
    assert settings.master_key_bytes() == {"k1": KEY_1, "k2": KEY_2}
    assert settings.current_master_key_id() == "k2"


def test_doc3_documents_serve_without_a_master_key_exits_with_the_reason() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", "from documents.entrypoints.cli import main; main()", "serve"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 2
    assert "documents: configuration error" in ran.stderr
    assert "PORTAL_MASTER_KEYS is not set" in ran.stderr
