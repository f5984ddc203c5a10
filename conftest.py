"""Kafka and PostgreSQL for the tests marked integration or e2e (README: "Where the tests
get Kafka and PostgreSQL"); Redis for the tests that ask for `redis_url`.

The platform is a session fixture that only those tests request, first of all their
fixtures, so that the fixtures reading PORTAL_* see it; a run of unit tests starts nothing.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from servicekit.testplatform import PlatformEndpoints, needs_platform, provide_platform

REPO = Path(__file__).resolve().parent
PLATFORM_FIXTURE = "portal_platform"
ORIGIN = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def portal_platform(request: pytest.FixtureRequest) -> Iterator[PlatformEndpoints]:
    with provide_platform(REPO, os.environ) as endpoints, pytest.MonkeyPatch.context() as env:
        # In os.environ: the service processes that e2e tests spawn inherit it.
        for name, value in endpoints.environment().items():
            env.setenv(name, value)
        request.config.stash[ORIGIN] = endpoints.origin
        yield endpoints


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Redis for the gateway's rate limits: PORTAL_REDIS_URL, else the launcher starts Redis
    alone - and stops it again if it did. Set in os.environ for spawned services."""
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
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PORTAL_REDIS_URL", exports["PORTAL_REDIS_URL"])
            yield exports["PORTAL_REDIS_URL"]
    finally:
        if started:
            _launcher("stop-redis")


def _launcher(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the repository's own launcher
        [str(REPO / "deploy/local/platform"), command],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip


# pytest-timeout counts fixtures, and an end-to-end test's first use of its platform starts
# every service - minutes on a loaded two-core machine: their hang guard is wider.
E2E_TIMEOUT_SECONDS = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        markers = {marker.name for marker in item.iter_markers()}
        if "e2e" in markers and "timeout" not in markers:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_SECONDS))
        if (
            isinstance(item, pytest.Function)
            and needs_platform(markers)
            and PLATFORM_FIXTURE not in item.fixturenames
        ):
            # First: session fixtures like `dsn` read the environment this one sets.
            item.fixturenames.insert(0, PLATFORM_FIXTURE)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    origin = terminalreporter.config.stash.get(ORIGIN, None)
    if origin:
        terminalreporter.write_line(f"Kafka and PostgreSQL: {origin}")
