"""Waiting for a started service: no deadline, but never forever (tests/readiness.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from readiness import Startup, cpu_ticks, wait_ready

UNUSED_URL = "http://127.0.0.1:9"  # discard port: nothing answers


@pytest.fixture
def idle_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


def test_a_ready_answer_ends_the_wait(
    idle_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    startup = Startup("identity", idle_process, UNUSED_URL, tmp_path / "log")
    assert startup.ready(httpx.Response(200))


def test_a_process_that_exited_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "identity.log"
    log.write_text("configuration error: PORTAL_DATA_KEY missing")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    process.wait()
    with pytest.raises(RuntimeError, match="identity exited:\nconfiguration error"):
        wait_ready(Startup("identity", process, UNUSED_URL, log))


def test_a_process_that_uses_no_processor_without_becoming_ready_is_given_up(
    idle_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    log = tmp_path / "identity.log"
    log.write_text("")
    startup = Startup("identity", idle_process, UNUSED_URL, log, stalled_after=0.5)
    with pytest.raises(RuntimeError, match=r"identity not ready and idle .*ConnectError"):
        wait_ready(startup)


def test_processor_time_is_read_for_a_running_process_and_minus_one_once_it_is_gone() -> None:
    process = subprocess.Popen([sys.executable, "-c", "sum(range(10**7))"])
    assert cpu_ticks(process.pid) >= 0
    process.wait()
    assert cpu_ticks(process.pid) == -1
