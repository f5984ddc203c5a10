"""Where the integration and end-to-end tests get Kafka and PostgreSQL (servicekit.testplatform)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from servicekit import testplatform
from servicekit.testplatform import (
    DATABASE_VARIABLE,
    KAFKA_EXTERNAL_VARIABLE,
    KAFKA_VARIABLE,
    LAUNCHER_STARTING,
    Images,
    PlatformEndpoints,
    PlatformError,
    Source,
    choose_source,
    compose_image,
    endpoints_from_exports,
    from_launcher,
    launcher_kafka_version,
    needs_platform,
    pinned_images,
    provide_platform,
)

REPO = Path(__file__).resolve().parents[4]
KAFKA = "broker.example:9092"
DATABASE = "postgresql://u:p@db.example:5432/portal"
LAUNCHER_EXPORTS = (
    "export PORTAL_KAFKA_BOOTSTRAP=127.0.0.1:19092\n"
    "export PORTAL_DATABASE_URL=postgresql://portal:portal@127.0.0.1:15432/portal\n"
)


def docker(answer: bool) -> Callable[[], bool]:
    return lambda: answer


def no_probe() -> bool:
    raise AssertionError("the Docker engine was probed")


class FakeLauncher:
    """deploy/local/platform as the tests see it: records the subcommands it was given,
    and `start` logs as the launcher does which servers it starts itself."""

    def __init__(
        self,
        *,
        running: bool,
        starts: tuple[str, ...] = ("postgres", "kafka"),
        failing: str | None = None,
    ) -> None:
        self.running = running
        self.starts = () if running else starts
        self.failing = failing
        self.commands: list[str] = []

    def __call__(self, command: str) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        failed = command == self.failing or (command == "status" and not self.running)
        stdout = LAUNCHER_EXPORTS if command == "env" else ""
        stderr = self._start_log() if command == "start" else ""
        if failed:
            stderr += f"[platform] error: {command} went wrong\n"
        return subprocess.CompletedProcess([command], int(failed), stdout, stderr)

    def _start_log(self) -> str:
        return "".join(
            f"[platform] {server}: starting on 127.0.0.1\n"
            if server in self.starts
            else f"[platform] {server}: already running (pid 1) on 127.0.0.1\n"
            for server in ("postgres", "kafka")
        )


# ---------------------------------------------------------------------------------------
# The choice
# ---------------------------------------------------------------------------------------
def test_servers_named_in_the_environment_win_without_asking_docker() -> None:
    env = {KAFKA_VARIABLE: KAFKA, DATABASE_VARIABLE: DATABASE}

    assert choose_source(env, no_probe) is Source.ENVIRONMENT


def test_a_docker_engine_wins_over_the_launcher() -> None:
    assert choose_source({}, docker(True)) is Source.DOCKER


def test_the_launcher_is_the_last_resort() -> None:
    assert choose_source({}, docker(False)) is Source.LAUNCHER


def test_empty_variables_count_as_unset() -> None:
    env = {KAFKA_VARIABLE: "", DATABASE_VARIABLE: ""}

    assert choose_source(env, docker(False)) is Source.LAUNCHER


@pytest.mark.parametrize(
    ("given", "missing"),
    [(KAFKA_VARIABLE, DATABASE_VARIABLE), (DATABASE_VARIABLE, KAFKA_VARIABLE)],
)
def test_only_one_of_the_two_variables_is_an_error_naming_both(given: str, missing: str) -> None:
    with pytest.raises(PlatformError, match=f"{given} is set but {missing} is not"):
        choose_source({given: "somewhere:1"}, no_probe)


def test_a_failing_docker_probe_means_no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(**_: object) -> None:
        raise ConnectionError("no engine")

    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    monkeypatch.setattr("testcontainers.core.docker_client.DockerClient", unreachable)

    assert testplatform.docker_engine_available() is False


def test_without_any_docker_configuration_there_is_no_engine_to_ask(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(testplatform, "DOCKER_SOCKET", tmp_path / "docker.sock")

    assert not testplatform.docker_engine_configured({}, home=tmp_path)


@pytest.mark.parametrize(
    "configured",
    ["DOCKER_HOST", "DOCKER_CONTEXT", "socket", ".testcontainers.properties", ".docker/contexts"],
)
def test_each_place_testcontainers_looks_for_an_engine_counts(
    configured: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    socket = tmp_path / "docker.sock"
    monkeypatch.setattr(testplatform, "DOCKER_SOCKET", socket)
    env = {configured: "x"} if configured.startswith("DOCKER_") else {}
    if configured == "socket":
        socket.touch()
    elif not env:
        (tmp_path / configured).mkdir(parents=True)

    assert testplatform.docker_engine_configured(env, home=tmp_path)


# ---------------------------------------------------------------------------------------
# Which tests need it
# ---------------------------------------------------------------------------------------
def test_a_run_of_unit_tests_needs_no_platform() -> None:
    unit_tests = [set(), {"asyncio"}, {"parametrize", "timeout"}, {"skipif"}]

    assert not any(needs_platform(markers) for markers in unit_tests)


@pytest.mark.parametrize("marker", ["integration", "e2e"])
def test_integration_and_end_to_end_tests_need_the_platform(marker: str) -> None:
    assert needs_platform({"asyncio", marker})


# ---------------------------------------------------------------------------------------
# The launcher
# ---------------------------------------------------------------------------------------
def test_a_running_launcher_platform_is_used_and_left_running() -> None:
    launcher = FakeLauncher(running=True)

    with from_launcher(launcher) as endpoints:
        assert endpoints.kafka_bootstrap == "127.0.0.1:19092"
        assert endpoints.database_url == "postgresql://portal:portal@127.0.0.1:15432/portal"

    assert launcher.commands == ["status", "env"]
    assert "already running" in endpoints.origin


def test_a_platform_the_session_started_is_stopped_after_it() -> None:
    launcher = FakeLauncher(running=False)

    with from_launcher(launcher):
        assert launcher.commands == ["status", "start", "env"]

    assert launcher.commands == ["status", "start", "env", "stop"]


def test_a_platform_another_run_started_meanwhile_is_left_running() -> None:
    launcher = FakeLauncher(running=False, starts=())

    with from_launcher(launcher) as endpoints:
        pass

    assert launcher.commands == ["status", "start", "env"]
    assert "already running" in endpoints.origin


def test_starting_one_of_the_two_servers_stops_both_afterwards() -> None:
    launcher = FakeLauncher(running=False, starts=("kafka",))

    with from_launcher(launcher):
        pass

    assert launcher.commands[-1] == "stop"


def test_a_platform_the_session_started_is_stopped_when_the_tests_fail() -> None:
    launcher = FakeLauncher(running=False)

    with pytest.raises(RuntimeError, match="tests failed"), from_launcher(launcher):
        raise RuntimeError("tests failed")

    assert launcher.commands[-1] == "stop"


def test_a_start_failing_after_starting_a_server_stops_it_and_says_why() -> None:
    launcher = FakeLauncher(running=False, starts=("postgres",), failing="start")

    with pytest.raises(PlatformError, match="start went wrong"), from_launcher(launcher):
        pytest.fail("the platform was provided although it did not start")

    assert launcher.commands == ["status", "start", "stop"]


def test_a_start_failing_before_starting_anything_stops_nothing() -> None:
    launcher = FakeLauncher(running=False, starts=(), failing="start")

    with pytest.raises(PlatformError, match="start went wrong"), from_launcher(launcher):
        pytest.fail("the platform was provided although it did not start")

    assert launcher.commands == ["status", "start"]


def test_the_launcher_logs_the_starts_this_module_looks_for() -> None:
    script = (REPO / "deploy/local/platform").read_text()

    for server in ("kafka", "postgres"):
        line = re.search(rf'log "({server}: starting [^"]*)"', script)
        assert line, f"deploy/local/platform no longer logs '{server}: starting'"
        assert LAUNCHER_STARTING.search(f"[platform] {line.group(1)}")


def test_status_waits_for_the_launchers_lock_and_nothing_else_does(tmp_path: Path) -> None:
    script = tmp_path / "deploy/local/platform"
    script.parent.mkdir(parents=True)
    script.write_text(
        "#!/bin/sh\n"
        'cd "$(dirname "$0")/../.."\n'
        "if flock -n .local/platform.lock true; then echo free; else echo held; fi\n"
    )
    script.chmod(0o755)
    run = testplatform.launcher(tmp_path)

    assert run("status").stdout == "held\n"
    assert run("env").stdout == "free\n"


def test_the_launchers_exports_are_read_with_shell_quoting() -> None:
    exports = (
        "export PORTAL_KAFKA_BOOTSTRAP=b1:9092,b2:9092\n"
        "export PORTAL_DATABASE_URL=postgresql://u:p\\ w@db/portal\n"
        "export PORTAL_KAFKA_EXTERNAL=1\n"
    )

    assert endpoints_from_exports(exports) == PlatformEndpoints(
        "b1:9092,b2:9092", "postgresql://u:p w@db/portal", kafka_external=True
    )


def test_exports_without_a_database_url_are_an_error() -> None:
    with pytest.raises(PlatformError, match=DATABASE_VARIABLE):
        endpoints_from_exports("export PORTAL_KAFKA_BOOTSTRAP=b:9092\n")


# ---------------------------------------------------------------------------------------
# What the tests see
# ---------------------------------------------------------------------------------------
def test_the_environment_source_passes_the_servers_on_and_starts_nothing() -> None:
    env = {KAFKA_VARIABLE: KAFKA, DATABASE_VARIABLE: DATABASE}
    launcher = FakeLauncher(running=False)

    with provide_platform(REPO, env, docker_available=no_probe, run_launcher=launcher) as got:
        assert got.environment() == env

    assert launcher.commands == []


def test_without_environment_or_docker_the_launcher_provides_the_platform() -> None:
    launcher = FakeLauncher(running=True)

    with provide_platform(REPO, {}, docker_available=docker(False), run_launcher=launcher) as got:
        assert got.environment() == {
            KAFKA_VARIABLE: "127.0.0.1:19092",
            DATABASE_VARIABLE: "postgresql://portal:portal@127.0.0.1:15432/portal",
        }

    assert launcher.commands == ["status", "env"]


def test_a_broker_the_launcher_cannot_restart_is_announced_to_the_tests() -> None:
    endpoints = PlatformEndpoints(KAFKA, DATABASE, kafka_external=True)

    assert endpoints.environment()[KAFKA_EXTERNAL_VARIABLE] == "1"


# ---------------------------------------------------------------------------------------
# The images deploy/ pins
# ---------------------------------------------------------------------------------------
def test_containers_run_the_images_deploy_pins() -> None:
    kafka_version = launcher_kafka_version((REPO / "deploy/local/platform").read_text())
    compose = (REPO / "deploy/compose.yaml").read_text()

    assert pinned_images(REPO) == Images(
        kafka=f"apache/kafka:{kafka_version}", postgres=compose_image(compose, "postgres")
    )


def test_compose_runs_the_kafka_version_the_launcher_pins() -> None:
    compose = (REPO / "deploy/compose.yaml").read_text()

    assert compose_image(compose, "apache/kafka") == pinned_images(REPO).kafka


def test_a_broker_container_advertises_the_hosts_mapped_port_to_clients() -> None:
    script = testplatform.kafka_start_script("localhost", 32771)

    assert "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://localhost:32771,BROKER://" in script
    assert script.endswith("exec /etc/kafka/docker/run\n")


def test_commented_out_images_in_compose_are_not_pins() -> None:
    compose = "services:\n  # x:\n  #   image: postgres:9\n  db:\n    image: 'postgres:16'\n"

    assert compose_image(compose, "postgres") == "postgres:16"
