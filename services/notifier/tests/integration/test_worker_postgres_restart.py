"""NT-4: the delivery worker rides out a PostgreSQL restart (issue 13's chaos runs: at every
`restart-postgres --immediate` both notifier instances exited with InterfaceError).

The escape: the worker's wake-up listener (`DueNotifications`) held a pooled connection;
when PostgreSQL went away asyncpg gave that connection back to the pool and detached the
proxy, so the next `is_closed()` on it raised InterfaceError ("connection has been released
back to the pool") out of `DeliveryWorker.run`. Here a real PostgreSQL is restarted with an
immediate shutdown under a running notifier; a delivery queued once it is back goes out,
and nothing is sent twice.

It restarts PostgreSQL, so it runs only on an isolated launcher instance of its own and on
demand (the unit twin in tests/unit/test_worker_outage.py runs everywhere):
    export PORTAL_PLATFORM_DIR=/var/tmp/nt-restart PORTAL_PLATFORM_PORT_BASE=23000
    deploy/local/platform start && eval "$(deploy/local/platform env)"
    PORTAL_TEST_RESTART_POSTGRES=1 .tools/bin/uv run pytest \
        services/notifier/tests/integration/test_worker_postgres_restart.py
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from contracts_schemas.claims import ClaimStatus
from notifier_harness import Customer, platform, running_notifier, until
from notifier_servers import SmtpServer, running_smtp

OPT_IN = "PORTAL_TEST_RESTART_POSTGRES"
LAUNCHER = Path(__file__).resolve().parents[4] / "deploy" / "local" / "platform"
#: Guards against a hang only (a loaded machine; the restart itself takes seconds).
HANG_GUARD_SECONDS = 120.0

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get(OPT_IN) != "1",
        reason=f"restarts PostgreSQL: {OPT_IN}=1 on an isolated launcher instance",
    ),
]


def _isolated_instance() -> None:
    """Refuse to restart the shared platform: the database must be the isolated one's."""
    dsn, _ = platform()
    base = os.environ.get("PORTAL_PLATFORM_PORT_BASE")
    assert os.environ.get("PORTAL_PLATFORM_DIR"), "needs an isolated launcher instance"
    assert base, "needs an isolated launcher instance"
    assert urlsplit(dsn).port == int(base), f"{dsn} is not the isolated instance's PostgreSQL"


async def _restart_postgres_immediately() -> None:
    restart = await asyncio.create_subprocess_exec(str(LAUNCHER), "restart-postgres", "--immediate")
    assert await asyncio.wait_for(restart.wait(), HANG_GUARD_SECONDS) == 0


async def _arrived(smtp: SmtpServer, count: int) -> None:
    async def check() -> bool:
        return len(smtp.handler.envelopes) >= count

    await until(check, within=HANG_GUARD_SECONDS)


async def test_nt4_the_worker_outlives_an_immediate_postgres_restart_and_sends_once() -> None:
    _isolated_instance()
    async with (
        running_smtp() as smtp,
        running_notifier(smtp_port=smtp.port, worker_poll_seconds=0.2) as notifier,
    ):
        erika = Customer()
        await notifier.publish(erika.registered())
        await notifier.contact_known(erika.customer_id)
        before = erika.claim_status("claim-000701", ClaimStatus.DOCUMENTS_REQUESTED)
        await notifier.publish(before)
        await _arrived(smtp, 1)

        await _restart_postgres_immediately()
        after = erika.claim_status(
            "claim-000701", ClaimStatus.APPROVED, old_status=ClaimStatus.DOCUMENTS_REQUESTED
        )
        await notifier.publish(after)
        await _arrived(smtp, 2)
        deliveries = await notifier.settled(erika.customer_id, count=2)

        assert sorted(d["message_key"] for d in deliveries) == sorted(
            [erika.email_key(before), erika.email_key(after)]
        )
        assert all(d["status"] == "sent" for d in deliveries)
        sent = sorted(smtp.handler.message_ids())
        assert sent == sorted(set(sent)), "a message was sent twice"
        assert len(sent) == 2
    # running_notifier's exit asserts that no loop (the worker's included) failed.
