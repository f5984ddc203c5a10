"""The delivery worker is woken by the intake's commit, not by its poll (issue 12): a
delivery queued while the worker is idle goes out although the next poll is an hour
away. PostgreSQL NOTIFY on the schema's channel at the commit of the transaction that
queued it; the poll stays the fallback for retries and missed notifications."""

from __future__ import annotations

import asyncio

import pytest
from contracts_schemas.claims import ClaimStatus
from notifier_harness import Customer, running_notifier
from notifier_servers import running_smtp

pytestmark = pytest.mark.integration

AN_HOUR = 3600.0
#: A guard against a hang only: far below the poll interval the worker was given.
HANG_GUARD_SECONDS = 120.0


async def test_nt4_a_delivery_queued_while_the_worker_idles_is_sent_without_a_poll() -> None:
    async with (
        running_smtp() as smtp,
        running_notifier(smtp_port=smtp.port, worker_poll_seconds=AN_HOUR) as notifier,
    ):
        erika = Customer()
        await notifier.publish(erika.registered())
        await notifier.contact_known(erika.customer_id)
        changed = erika.claim_status("claim-000777", ClaimStatus.APPROVED)
        await notifier.publish(changed)

        await asyncio.wait_for(smtp.handler.arrived.wait(), HANG_GUARD_SECONDS)
        (delivery,) = await notifier.settled(erika.customer_id)

        assert delivery["status"] == "sent"
        assert delivery["message_key"] == erika.email_key(changed)
        (envelope,) = smtp.handler.envelopes
        assert envelope.rcpt_tos == [erika.email]
