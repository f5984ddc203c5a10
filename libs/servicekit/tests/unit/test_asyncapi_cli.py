"""`python -m servicekit.asyncapi_cli`: writes the documents and checks them for drift."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from contracts_schemas import topics
from servicekit.asyncapi import StreamSpec
from servicekit.asyncapi_cli import load_spec, main

SPEC = StreamSpec("fake", consumes={"fake.facts": (topics.CONTRACTS_POLICY,)})
OTHER = StreamSpec("other", publishes=(topics.LOYALTY_ACCOUNT,))


@pytest.fixture(autouse=True)
def fake_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service `fake` whose stream entrypoint declares STREAM, and a module with OTHER."""
    entrypoint = types.ModuleType("fake.entrypoints.stream")
    entrypoint.STREAM = SPEC  # type: ignore[attr-defined]
    specs = types.ModuleType("fake_specs")
    specs.OTHER = OTHER  # type: ignore[attr-defined]
    specs.NOT_A_SPEC = "loyalty"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake.entrypoints.stream", entrypoint)
    monkeypatch.setitem(sys.modules, "fake_specs", specs)


def test_a_bare_service_name_means_the_stream_entrypoint_spec() -> None:
    assert load_spec("fake") is SPEC


def test_a_module_and_attribute_name_a_spec_anywhere() -> None:
    assert load_spec("fake_specs:OTHER") is OTHER


def test_something_that_is_not_a_spec_is_refused() -> None:
    with pytest.raises(TypeError, match="not a StreamSpec"):
        load_spec("fake_specs:NOT_A_SPEC")


def test_written_documents_pass_the_check(tmp_path: Path) -> None:
    assert main(["--dir", str(tmp_path), "fake", "fake_specs:OTHER"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.json", "other.json"]
    assert main(["--check", "--dir", str(tmp_path), "fake", "fake_specs:OTHER"]) == 0


def test_a_missing_document_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check", "--dir", str(tmp_path), "fake"]) == 1
    assert "fake.json: missing" in capsys.readouterr().err


def test_a_document_edited_by_hand_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--dir", str(tmp_path), "fake"])
    path = tmp_path / "fake.json"
    path.write_text(path.read_text().replace("portal.dlq.fake.facts", "portal.dlq.elsewhere"))
    assert main(["--check", "--dir", str(tmp_path), "fake"]) == 1
    assert "fake.json: differs from its spec" in capsys.readouterr().err


def test_a_document_no_service_describes_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--dir", str(tmp_path), "fake", "fake_specs:OTHER"])
    assert main(["--check", "--dir", str(tmp_path), "fake"]) == 1
    assert "other.json: no service describes it" in capsys.readouterr().err


def test_the_check_writes_nothing(tmp_path: Path) -> None:
    main(["--check", "--dir", str(tmp_path), "fake"])
    assert list(tmp_path.iterdir()) == []
