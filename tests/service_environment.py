"""The environment of one service process started on this machine: the end-to-end tests
(tests/e2e_harness.py, one process per service) and the chaos run (chaos/fleet.py, two
per service) build it here, the same way: what every process of the run shares (the
platform underneath, topic prefix, business-time file, the upstream systems' credentials,
the key set tokens are verified with), then the process' own settings (port, schema,
instance id), its service's secrets and where it finds the services it calls.

Imported by pytest (on its `pythonpath`) and by `python -m chaos` (which puts tests/ on
sys.path); it needs nothing but servicekit.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servicekit.auth import ServiceCredentials

# Where the gateway routes (its own default route table).
GATEWAY_UPSTREAMS = ("identity", "contracts", "loyalty", "claims", "documents")
# The runs' clients all come from 127.0.0.1: the gateway's limits are exercised by the
# gateway's own tests, not by every end-to-end test or chaos journey sharing one address.
GENEROUS = "1000000/minute"
LOOPBACK = json.dumps(["127.0.0.1"])


@dataclass(frozen=True)
class Run:
    """What every service process of one run shares."""

    prefix: str  # topics and schemas of this run only
    clock_file: Path  # business time (absent: the wall clock)
    systems: Mapping[str, str]  # upstream system -> its secret (every service knows digests)
    below: Mapping[str, str]  # the environment underneath (PATH, the platform's addresses)
    keys: Mapping[str, str]  # PORTAL_JWKS (a test's own key) or PORTAL_JWKS_URL (identity's)
    smtp_port: int = 0  # the notifier's outside world (stand-ins)
    sms_url: str = ""
    print_queue: Path | None = None
    notifier: Mapping[str, str] = field(default_factory=dict)  # more of the notifier's

    def schema(self, service: str) -> str:
        return f"{self.prefix.rstrip('.').replace('-', '_')}_{service}"


@dataclass(frozen=True)
class Process:
    """One process of a service."""

    service: str
    port: int
    instance_id: str  # static consumer-group membership: one id per process
    secrets: Mapping[str, str] = field(default_factory=dict)  # shared by the service's instances
    # The services it calls -> their instances' base URLs (a backend calls the first; the
    # gateway spreads over all of them).
    neighbours: Mapping[str, Sequence[str]] = field(default_factory=dict)


def environment(run: Run, process: Process) -> dict[str, str]:
    """The process' whole environment."""
    keys = dict(run.keys)
    if process.service == "gateway" and "identity" in process.neighbours:
        keys.pop("PORTAL_JWKS_URL", None)  # the key set from any identity instance it routes to
    common = {
        "PORTAL_HTTP_PORT": str(process.port),
        "PORTAL_TOPIC_PREFIX": run.prefix,
        "PORTAL_DATABASE_SCHEMA": run.schema(process.service),
        "PORTAL_INSTANCE_ID": process.instance_id,
        "PORTAL_SERVICE_CREDENTIALS": json.dumps(
            {name: ServiceCredentials.digest(secret) for name, secret in run.systems.items()}
        ),
        "PORTAL_CLOCK_FILE": str(run.clock_file),
        "PORTAL_LOG_LEVEL": "INFO",
    }
    return {**run.below, **keys, **common, **process.secrets, **_own(run, process)}


def fresh_secrets(service: str, key_id: str) -> dict[str, str]:
    """New keys of a service (its instances must share them): identity's data key and code
    pepper, the documents' master key."""
    match service:
        case "identity":
            return {"PORTAL_DATA_KEY": _key(), "PORTAL_CODE_PEPPER": _key()}
        case "documents":
            return {"PORTAL_MASTER_KEYS": json.dumps({key_id: _key()}),
                    "PORTAL_MASTER_KEY_ID": key_id}  # fmt: skip
    return {}


def _own(run: Run, process: Process) -> dict[str, str]:
    """Settings only one service gets (where the others live, its outside world)."""
    first = {name: urls[0] for name, urls in process.neighbours.items() if urls}
    match process.service:
        case "identity":
            # The gateway (127.0.0.1) names the client in X-Forwarded-For: login failures
            # count per real client, as behind the gateway in production.
            return {"PORTAL_TRUSTED_PROXIES": LOOPBACK}
        case "contracts" if "identity" in first:
            # contracts asks identity's internal mTAN API (ID-6)
            return {"PORTAL_IDENTITY_BASE_URL": first["identity"],
                    "PORTAL_IDENTITY_SECRET": run.systems["contracts"]}  # fmt: skip
        case "notifier":
            return {
                "PORTAL_SMTP_HOST": "127.0.0.1", "PORTAL_SMTP_PORT": str(run.smtp_port),
                "PORTAL_SMTP_SECURITY": "none", "PORTAL_SMS_BASE_URL": run.sms_url,
                "PORTAL_SMS_API_KEY": "stand-in", "PORTAL_SMS_API_SECRET": "stand-in-secret",
                "PORTAL_PRINT_QUEUE_DIR": str(run.print_queue or ""),
                "PORTAL_DOCUMENTS_BASE_URL": first.get("documents", ""),
                "PORTAL_DOCUMENTS_SECRET": run.systems["notifier"],
                "PORTAL_RETRY_BASE_SECONDS": "1", "PORTAL_RETRY_MAX_SECONDS": "5",
                **run.notifier,
            }  # fmt: skip
        case "gateway":
            upstreams = {name: {"urls": list(process.neighbours[name])}
                         for name in GATEWAY_UPSTREAMS if process.neighbours.get(name)}  # fmt: skip
            return {
                "PORTAL_UPSTREAMS": json.dumps(upstreams),
                "PORTAL_RATE_LIMIT_PER_ADDRESS": GENEROUS,
                "PORTAL_RATE_LIMIT_PER_ACCOUNT": GENEROUS,
                "PORTAL_RATE_LIMIT_PUBLIC_PER_ADDRESS": GENEROUS,
                "PORTAL_OPENAPI_CACHE_SECONDS": "3600",
                # The runs stand in for a load balancer: a client may name itself in
                # X-Forwarded-For (schemathesis does, so identity's per-address login
                # throttle never slows the other tests down).
                "PORTAL_TRUSTED_PROXIES": LOOPBACK,
            }
    return {}


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
