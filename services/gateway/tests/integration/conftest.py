"""Redis for the gateway's integration tests: PORTAL_REDIS_URL (`deploy/local/platform
env` prints it), else the launcher starts Redis alone - and stops it again if it did."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
LAUNCHER = REPO / "deploy/local/platform"


def _launcher(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAUNCHER), command], capture_output=True, text=True, check=True, timeout=600
    )


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("PORTAL_REDIS_URL")
    if given:
        yield given
        return
    started = "redis: starting" in _launcher("start-redis").stderr
    exports = dict(
        words[1].split("=", 1)
        for line in _launcher("env").stdout.splitlines()
        if len(words := shlex.split(line)) == 2 and words[0] == "export"
    )
    try:
        yield exports["PORTAL_REDIS_URL"]
    finally:
        if started:
            _launcher("stop-redis")
