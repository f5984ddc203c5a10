"""OPS-2: the alert rules fire on exactly the conditions they are for, with their production
durations (lag growing for 10 minutes, any dead letter, outbox older than a minute, dead
notifications, 5xx rate) - promtool's rule unit tests on simulated series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # the launcher installs it as `make lint` does
        subprocess.run([str(REPO / "deploy/local/platform"), "ensure-prometheus"], check=True)
        found = shutil.which("promtool")
    assert found is not None
    return found


def test_ops2_the_alert_rules_are_valid() -> None:
    rules = sorted(str(p) for p in (REPO / "deploy/prometheus/rules").glob("*.yml"))
    subprocess.run([promtool(), "check", "rules", *rules], check=True, capture_output=True)


def test_ops2_each_alert_fires_on_its_condition_and_only_then() -> None:
    tests = REPO / "deploy/prometheus/tests"
    result = subprocess.run(
        [promtool(), "test", "rules", *sorted(p.name for p in tests.glob("*_test.yml"))],
        cwd=tests, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
