"""Where integration and end-to-end tests get Kafka and PostgreSQL from, in this order:

1. `PORTAL_KAFKA_BOOTSTRAP` and `PORTAL_DATABASE_URL` naming running servers;
2. a Docker engine: containers of the images deploy/ pins, through testcontainers;
3. the local launcher, `deploy/local/platform` (stopped afterwards only if started here).

Test support only: testcontainers is a development dependency, imported when used.
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

KAFKA_VARIABLE = "PORTAL_KAFKA_BOOTSTRAP"
DATABASE_VARIABLE = "PORTAL_DATABASE_URL"
# Tells tests that restart the broker that deploy/local/platform cannot (see the launcher).
KAFKA_EXTERNAL_VARIABLE = "PORTAL_KAFKA_EXTERNAL"

PLATFORM_MARKERS = frozenset({"integration", "e2e"})

LAUNCHER = Path("deploy/local/platform")
COMPOSE_FILE = Path("deploy/compose.yaml")
KAFKA_IMAGE_REPOSITORY = "apache/kafka"
POSTGRES_IMAGE_REPOSITORY = "postgres"


class Source(enum.Enum):
    ENVIRONMENT = "environment"
    DOCKER = "docker"
    LAUNCHER = "launcher"


class PlatformError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class PlatformEndpoints:
    kafka_bootstrap: str
    database_url: str
    kafka_external: bool = False
    origin: str = ""

    def environment(self) -> dict[str, str]:
        """The variables tests and the service processes they spawn read."""
        variables = {KAFKA_VARIABLE: self.kafka_bootstrap, DATABASE_VARIABLE: self.database_url}
        if self.kafka_external:
            variables[KAFKA_EXTERNAL_VARIABLE] = "1"
        return variables


@dataclasses.dataclass(frozen=True)
class Images:
    kafka: str
    postgres: str


# ---------------------------------------------------------------------------------------
# Decisions (pure)
# ---------------------------------------------------------------------------------------
def needs_platform(markers: Collection[str]) -> bool:
    """Whether a test with these markers needs Kafka and PostgreSQL."""
    return not PLATFORM_MARKERS.isdisjoint(markers)


def choose_source(env: Mapping[str, str], docker_available: Callable[[], bool]) -> Source:
    """The probe runs only when the environment does not decide.

    One of the two variables alone is an error rather than a fall-through: the set one
    would otherwise be silently replaced by another server's address.
    """
    kafka, database = env.get(KAFKA_VARIABLE), env.get(DATABASE_VARIABLE)
    if kafka and database:
        return Source.ENVIRONMENT
    if kafka or database:
        given, missing = (
            (KAFKA_VARIABLE, DATABASE_VARIABLE) if kafka else (DATABASE_VARIABLE, KAFKA_VARIABLE)
        )
        raise PlatformError(
            f"{given} is set but {missing} is not: set both to test against running servers, "
            "or neither to let the tests start Kafka and PostgreSQL"
        )
    return Source.DOCKER if docker_available() else Source.LAUNCHER


DOCKER_SOCKET = Path("/var/run/docker.sock")


def docker_engine_configured(env: Mapping[str, str], home: Path) -> bool:
    """Whether there is any place testcontainers would look for an engine: checked before
    importing it, which alone takes seconds."""
    docker_config = Path(env.get("DOCKER_CONFIG") or home / ".docker")
    return (
        bool(env.get("DOCKER_HOST") or env.get("DOCKER_CONTEXT"))
        or DOCKER_SOCKET.exists()
        or (home / ".testcontainers.properties").exists()
        or (docker_config / "contexts").exists()
    )


def docker_engine_available(timeout_seconds: float = 3.0) -> bool:
    """Whether a Docker engine answers, found the way testcontainers finds it. Never raises."""
    try:
        if not docker_engine_configured(os.environ, Path.home()):
            return False
        from testcontainers.core.docker_client import DockerClient

        client = DockerClient(timeout=timeout_seconds).client
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


# ---------------------------------------------------------------------------------------
# What deploy/ pins
# ---------------------------------------------------------------------------------------
def launcher_kafka_version(launcher_text: str) -> str:
    match = re.search(r'^readonly KAFKA_VERSION="([^"]+)"', launcher_text, re.MULTILINE)
    if not match:
        raise PlatformError(f"no KAFKA_VERSION pin in {LAUNCHER}")
    return match.group(1)


def compose_image(compose_text: str, repository: str) -> str:
    pattern = rf"^\s+image:\s*[\"']?({re.escape(repository)}:[^\s\"']+)"
    match = re.search(pattern, compose_text, re.MULTILINE)
    if not match:
        raise PlatformError(f"no {repository} image in {COMPOSE_FILE}")
    return match.group(1)


def pinned_images(repo: Path) -> Images:
    """Kafka at the launcher's KAFKA_VERSION (the one pin); PostgreSQL as compose.yaml runs it."""
    version = launcher_kafka_version((repo / LAUNCHER).read_text())
    postgres = compose_image((repo / COMPOSE_FILE).read_text(), POSTGRES_IMAGE_REPOSITORY)
    return Images(kafka=f"{KAFKA_IMAGE_REPOSITORY}:{version}", postgres=postgres)


# ---------------------------------------------------------------------------------------
# Providing the platform
# ---------------------------------------------------------------------------------------
LauncherRun = Callable[[str], subprocess.CompletedProcess[str]]

LAUNCHER_LOCK = Path(".local/platform.lock")
LAUNCHER_LOCK_TIMEOUT_SECONDS = 600
# What `deploy/local/platform start` logs just before it starts a server itself.
LAUNCHER_STARTING = re.compile(r"^\[platform\] (kafka|postgres): starting\b", re.MULTILINE)


def launcher(repo: Path) -> LauncherRun:
    script = repo / LAUNCHER

    def run(command: str) -> subprocess.CompletedProcess[str]:
        # `status` waits while another run starts, stops or restarts a server (they hold
        # the launcher's lock): a broker in the middle of a restart is not a platform
        # that is down.
        lock: AbstractContextManager[None] = (
            _launcher_lock(repo / LAUNCHER_LOCK) if command == "status" else nullcontext()
        )
        with lock:
            return subprocess.run(  # noqa: S603 - our own launcher, fixed subcommands
                [str(script), command], capture_output=True, text=True, check=False
            )

    return run


@contextmanager
def _launcher_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LAUNCHER_LOCK_TIMEOUT_SECONDS
    with path.open("a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PlatformError(f"another launcher run holds {path}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def provide_platform(
    repo: Path,
    env: Mapping[str, str],
    *,
    docker_available: Callable[[], bool] = docker_engine_available,
    run_launcher: LauncherRun | None = None,
) -> Iterator[PlatformEndpoints]:
    source = choose_source(env, docker_available)
    if source is Source.ENVIRONMENT:
        yield PlatformEndpoints(
            env[KAFKA_VARIABLE], env[DATABASE_VARIABLE], origin="from the environment"
        )
    elif source is Source.DOCKER:
        with from_containers(pinned_images(repo)) as endpoints:
            yield endpoints
    else:
        with from_launcher(run_launcher or launcher(repo)) as endpoints:
            yield endpoints


@contextmanager
def from_launcher(run: LauncherRun) -> Iterator[PlatformEndpoints]:
    """Use the launcher's platform, starting what is not up; stop it afterwards only if
    this run started a server.

    Whether it did is read from what `start` reports, not from `status` before it:
    another run may have started the platform in between. `stop` stops both servers, so
    when this run started only one of them, both are stopped (as scripts/with-platform
    does).
    """
    started = False
    try:
        if run("status").returncode != 0:
            start = run("start")
            started = bool(LAUNCHER_STARTING.search(start.stderr))
            _check(start, "start")
        endpoints = endpoints_from_exports(_check(run("env"), "env").stdout)
        state = "started for this run, stopped after it" if started else "already running"
        yield dataclasses.replace(endpoints, origin=f"from {LAUNCHER} ({state})")
    finally:
        if started:
            _check(run("stop"), "stop")


def _check(
    result: subprocess.CompletedProcess[str], command: str
) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        raise PlatformError(
            f"`{LAUNCHER} {command}` failed (exit {result.returncode}):\n{result.stderr}"
        )
    return result


def endpoints_from_exports(exports: str) -> PlatformEndpoints:
    """Read the `export NAME=value` lines that `deploy/local/platform env` prints."""
    variables: dict[str, str] = {}
    for line in exports.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            variables[name] = value
    try:
        return PlatformEndpoints(
            variables[KAFKA_VARIABLE],
            variables[DATABASE_VARIABLE],
            kafka_external=bool(variables.get(KAFKA_EXTERNAL_VARIABLE)),
        )
    except KeyError as missing:
        raise PlatformError(f"`{LAUNCHER} env` printed no {missing}") from None


@contextmanager
def from_containers(images: Images) -> Iterator[PlatformEndpoints]:
    with ExitStack() as stack:
        database_url = _start_postgres(stack, images.postgres)
        kafka_bootstrap = _start_kafka(stack, images.kafka)
        yield PlatformEndpoints(
            kafka_bootstrap,
            database_url,
            kafka_external=True,
            origin=f"from Docker ({images.kafka}, {images.postgres})",
        )


# PostgreSQL as deploy/compose.yaml and the launcher run it (fsync on: tests check durability).
POSTGRES_COMMAND = [
    "postgres",
    *("-c", "shared_buffers=256MB"),
    *("-c", "max_connections=200"),
    *("-c", "fsync=on"),
]


def _start_postgres(stack: ExitStack, image: str) -> str:
    from testcontainers.community.postgres import PostgresContainer

    container = (
        PostgresContainer(
            image,
            username="portal",
            password="portal",  # noqa: S106 - a throwaway container's
            dbname="portal",
            driver=None,
        )
        .with_env("POSTGRES_INITDB_ARGS", "--auth-host=scram-sha-256")
        .with_command(POSTGRES_COMMAND)
        .with_kwargs(shm_size="512m")
    )
    stack.enter_context(container)
    return container.get_connection_url(driver=None)


KAFKA_CLIENT_PORT = 9092
KAFKA_START_SCRIPT = "/tmp/testcontainers_start.sh"  # noqa: S108 - inside the container
KAFKA_READY_LOG = r"Kafka Server started"
KAFKA_START_TIMEOUT_SECONDS = 120

# One KRaft node as deploy/compose.yaml and the launcher configure it. PLAINTEXT is for
# clients on the host (advertised once the mapped port is known), BROKER for the node itself.
KAFKA_SETTINGS = {
    "CLUSTER_ID": "4L6g3nShT-eMCtK--X86sw",
    "KAFKA_NODE_ID": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
    "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
        "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
    ),
    "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    "KAFKA_NUM_PARTITIONS": "3",
    "KAFKA_DEFAULT_REPLICATION_FACTOR": "1",
    "KAFKA_MIN_INSYNC_REPLICAS": "1",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "5",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "true",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_HEAP_OPTS": "-Xms256m -Xmx1g",
}


def kafka_start_script(host: str, port: int) -> str:
    return (
        f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{host}:{port},BROKER://localhost:9093\n"
        "exec /etc/kafka/docker/run\n"
    )


def _start_kafka(stack: ExitStack, image: str) -> str:
    """A broker from the official image.

    testcontainers' KafkaContainer drives Confluent's images only (its start script runs
    /etc/confluent/docker/*, and with_kraft() refuses tags below 7.0.0), so this does what
    testcontainers-java does for apache/kafka: the container waits for a start script,
    written once the host port is known, since the broker must advertise that port.
    """
    from testcontainers.core.container import DockerContainer

    # The script is complete once the marker copied after it exists.
    ready = f"{KAFKA_START_SCRIPT}.ready"
    wait_for_script = f"while [ ! -f {ready} ]; do sleep 0.1; done"
    container = (
        DockerContainer(image)
        .with_exposed_ports(KAFKA_CLIENT_PORT)
        .with_envs(**KAFKA_SETTINGS)
        .with_command(["sh", "-c", f"{wait_for_script}; exec sh {KAFKA_START_SCRIPT}"])
    )
    stack.enter_context(container)
    host = container.get_container_host_ip()
    port = container.get_exposed_port(KAFKA_CLIENT_PORT)
    container.copy_into_container(kafka_start_script(host, port).encode(), KAFKA_START_SCRIPT)
    container.copy_into_container(b"", ready)
    _wait_until_kafka_ready(container)
    return f"{host}:{port}"


def _wait_until_kafka_ready(container: DockerContainer) -> None:
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    strategy = LogMessageWaitStrategy(KAFKA_READY_LOG)
    strategy.with_startup_timeout(KAFKA_START_TIMEOUT_SECONDS).wait_until_ready(container)
