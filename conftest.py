"""Kafka and PostgreSQL for the tests marked integration or e2e (README: "Where the tests
get Kafka and PostgreSQL").

The platform is a session fixture that only those tests request, first of all their
fixtures, so that the fixtures reading PORTAL_* see it; a run of unit tests starts nothing.
"""

from __future__ import annotations

import os
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        markers = {marker.name for marker in item.iter_markers()}
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
