"""Settings shared by every service, read from PORTAL_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.auth import DEFAULT_TOKEN_ISSUER
from servicekit.permissions import DEFAULT_SYSTEM_OPERATIONS, Operation


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTAL_", extra="ignore")

    service_name: str = "service"
    database_url: SecretStr = SecretStr("postgresql://portal:portal@127.0.0.1:15432/portal")
    database_schema: str | None = None
    database_pool_max: int = Field(default=10, ge=1)
    kafka_bootstrap: str = "127.0.0.1:19092"
    # KAFKA-1: may this service create the topics it lacks? True locally and in tests; false
    # where an operator owns the topics (the Helm chart: Strimzi's KafkaTopic resources).
    kafka_create_topics: bool = True
    # How long the group waits for a silent member before it rebalances; a restarted static
    # member (same instance id) takes its place back without waiting at all.
    kafka_session_timeout_ms: int = Field(default=30_000, ge=6_000)
    # Members of each consumer group in this process (`EventStream.subscriber`), each with
    # partitions and a database connection of its own: while one waits on the database,
    # another decodes. More throughput, but more and smaller batches at a steady load (the
    # README has both measured); more than the topics' partitions would leave some idle.
    kafka_consumers_per_group: int = Field(default=1, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    jwks_url: str | None = None
    jwks: str | None = None  # inline JWKS JSON: development and tests
    topic_prefix: str = ""  # isolates test runs sharing one broker
    token_audience: str = "portal"  # noqa: S105 - an audience, not a secret
    token_issuer: str = DEFAULT_TOKEN_ISSUER  # always checked; `iss` of the identity service
    # system name -> SHA-256 hex digest of its secret (see servicekit.auth.ServiceCredentials)
    service_credentials: dict[str, str] = Field(default_factory=dict)
    # system name -> the internal operations it may call (see servicekit.permissions)
    system_operations: dict[str, list[Operation]] = Field(
        default_factory=lambda: {s: list(ops) for s, ops in DEFAULT_SYSTEM_OPERATIONS.items()}
    )
    log_level: str = "INFO"
    # Names this instance among several of one service (Kafka static membership: keep it
    # across restarts, never share it between instances running at once). Default: host name.
    instance_id: str | None = None
    clock_file: Path | None = None  # test environments only: see servicekit.clock.FileClock

    @property
    def schema_name(self) -> str:
        return self.database_schema or self.service_name
