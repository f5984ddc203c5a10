"""IMG-1: deploy/container/Containerfile is the one image of every service, and it can be
built from this repository: it parses, each COPY from the build context names a file that
exists and that .dockerignore does not exclude, the workspace is installed with
`uv sync --frozen --no-dev`, the final stage runs as a non-root user without a
HEALTHCHECK (Kubernetes probes), the entrypoint starts every service the Helm chart runs,
and the chart's image is this one. No container engine runs here: building the image is
not part of the tests (deploy/README.md)."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
ENTRYPOINT = ROOT / "deploy" / "container" / "entrypoint"
VALUES = ROOT / "deploy" / "kubernetes" / "portal" / "values.yaml"
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Dockerfile syntax: comments, line continuations with a backslash, KEYWORD args."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        if keyword.upper() not in INSTRUCTIONS:
            raise ValueError(f"line {start}: unknown instruction {keyword!r}")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
    if pending:
        raise ValueError("the file ends inside a line continuation")
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        elif not result:
            if instruction.keyword != "ARG":
                raise ValueError(f"line {instruction.line}: {instruction.keyword} before FROM")
            continue
        if result:
            result[-1].append(instruction)
    return result


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: a pattern matches the path or a directory above it; the last
    matching pattern decides (`!` includes again)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    decision = False
    for raw in patterns:
        pattern = raw.removeprefix("!").strip("/")
        if any(_matches(candidate, pattern) for candidate in candidates):
            decision = not raw.startswith("!")
    return decision


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):
        segments = path.split("/")
        return any(
            fnmatch.fnmatch("/".join(segments[i:]), pattern[3:]) for i in range(len(segments))
        )
    return fnmatch.fnmatch(path, pattern)


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def copy_sources(instruction: Instruction) -> list[str]:
    words = [w for w in instruction.arguments.split() if not w.startswith("--")]
    return words[:-1]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(CONTAINERFILE.read_text())


def test_img_1_the_containerfile_parses_into_a_build_and_a_runtime_stage(
    instructions: list[Instruction],
) -> None:
    froms = [i.arguments for i in instructions if i.keyword == "FROM"]
    assert any(f.endswith("AS build") for f in froms)
    assert froms[-1].endswith("AS runtime")
    base = next(i.arguments for i in instructions if i.arguments.startswith("PYTHON_IMAGE="))
    assert base.split("=", 1)[1].endswith("python:3.11-slim")
    assert all(f.startswith(("${PYTHON_IMAGE}", "${UV_IMAGE}")) for f in froms)


def test_img_1_every_file_copied_from_the_context_exists_and_is_not_ignored(
    instructions: list[Instruction],
) -> None:
    patterns = dockerignore()
    copied = [
        source
        for i in instructions
        if i.keyword in {"COPY", "ADD"} and "--from=" not in i.arguments
        for source in copy_sources(i)
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not ignored(source.rstrip("/"), patterns), f"COPY {source}: .dockerignore drops it"


def test_img_1_tests_local_state_and_tools_stay_out_of_the_context() -> None:
    patterns = dockerignore()

    kept_out = [
        ".venv/bin/python",
        ".local/kafka/libs",
        "services/claims/tests/unit",
        "libs/servicekit/src/servicekit/__pycache__/kafka.cpython-311.pyc",
    ]
    kept_in = [
        "services/claims/src/claims/bootstrap.py",
        "services/claims/migrations",
        "contracts-schemas/schemas",
        "uv.lock",
        "deploy/container/entrypoint",
    ]
    assert [path for path in kept_out if not ignored(path, patterns)] == []
    assert [path for path in kept_in if ignored(path, patterns)] == []


def test_img_1_the_copied_pyprojects_are_every_workspace_member(
    instructions: list[Instruction],
) -> None:
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    copied = {
        source
        for i in instructions
        if i.keyword == "COPY"
        for source in copy_sources(i)
        if source.endswith("/pyproject.toml")
    }
    assert copied == {f"{member}/pyproject.toml" for member in workspace["members"]}


def test_img_1_the_workspace_is_installed_from_the_lock_without_development_tools(
    instructions: list[Instruction],
) -> None:
    runs = " ".join(i.arguments for i in instructions if i.keyword == "RUN")
    assert re.search(r"uv sync --frozen --no-dev( |$)", runs)
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in " ".join(
        i.arguments for i in instructions if i.keyword == "ENV"
    )


def test_img_1_the_runtime_runs_as_a_non_root_user_without_a_healthcheck(
    instructions: list[Instruction],
) -> None:
    runtime = stages(instructions)[-1]
    users = [i.arguments for i in runtime if i.keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert not any(i.keyword == "HEALTHCHECK" for i in instructions)
    entrypoint = next(i.arguments for i in runtime if i.keyword == "ENTRYPOINT")
    assert entrypoint == '["/app/deploy/container/entrypoint"]'


def _entrypoint(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The entrypoint with stand-in programs that print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ["claims", "gateway", "portal", "python"]:
        program = bin_dir / name
        program.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        program.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(
        [str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, check=False
    )


def test_img_1_the_argument_picks_the_service_and_serve_is_the_default(tmp_path: Path) -> None:
    assert _entrypoint("claims", tmp_path=tmp_path).stdout == "claims serve\n"
    assert _entrypoint("gateway", "serve", tmp_path=tmp_path).stdout == "gateway serve\n"
    assert _entrypoint("portal", "stuck", tmp_path=tmp_path).stdout == "portal stuck\n"
    assert _entrypoint("python", "/opt/x.py", tmp_path=tmp_path).stdout == "python /opt/x.py\n"


def test_img_1_without_an_argument_the_entrypoint_says_how_to_call_it(tmp_path: Path) -> None:
    result = _entrypoint(tmp_path=tmp_path)

    assert result.returncode == 2
    assert "SERVICE" in result.stderr


def test_img_1_the_entrypoint_knows_every_service_the_chart_runs() -> None:
    values = yaml.safe_load(VALUES.read_text())
    known = re.search(r'^SERVICES="([^"]+)"', ENTRYPOINT.read_text(), re.MULTILINE)
    assert known
    assert set(values["services"]) <= set(known.group(1).split())
    for service in values["services"]:
        scripts = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
        assert service in scripts["project"]["scripts"]


def test_img_1_the_chart_runs_this_image() -> None:
    values = yaml.safe_load(VALUES.read_text())
    built = re.search(r"-t (\S+):(\S+) \.", CONTAINERFILE.read_text())
    assert built
    assert values["image"]["repository"] == built.group(1)
