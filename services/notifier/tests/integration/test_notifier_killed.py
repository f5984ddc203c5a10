"""NT-4 under a crash: a real `notifier serve` process is SIGKILLed while it consumes a
stream of events and sends their e-mails, then started again.

Expected (README, "The crash window"): every e-mail arrives; none arrives twice, except
a message whose attempt was in flight at the kill *and* had already been accepted by the
SMTP server. Such a duplicate carries the same Message-ID (the message key), and its
delivery log shows the attempt recovered with `outcome_unknown` after its lease ran out.

The restarted process has the killed one's `PORTAL_INSTANCE_ID` (static membership): the
group coordinator hands it the killed member's partitions at once instead of waiting for
the consumer session timeout to expire that member. The group's generation proves it: the
restarted process joins the generation the killed one had (no rebalance, no waiting for
the session timeout); a new member would have had to wait for the old one to expire and
then join the next generation. The tail of the stream is published only after the
restart, so the restarted process must consume to deliver it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import asyncpg
import pytest
from notifier_harness import (
    Customer,
    NotifierProcess,
    platform,
    publisher,
    until,
)
from notifier_servers import RecordingHandler, free_port, running_smtp
from servicekit.db import drop_schema
from servicekit.testing import unique

pytestmark = pytest.mark.integration

CUSTOMERS = 30
CLAIMS_EACH = 2
TAIL = 10  # events published after the restart
CONCURRENCY = 4
#: The consumer session timeout of this test's process: how long a killed member would hold
#: its partitions if the restarted process were a new member. Far longer than a restart can
#: take on a loaded machine, so only static membership can explain an unchanged generation
#: (with the default 30 s, a restart slower than that let the group move on: a flake).
SESSION_TIMEOUT_SECONDS = 300.0
#: What the restarted process may take to deliver the tail: a guard against a hang, well
#: under the session timeout that a new member would have had to wait out.
TAIL_WITHIN_SECONDS = 120.0


async def test_nt4_killed_mid_stream_and_restarted_every_email_arrives_once() -> None:
    dsn, _ = platform()
    prefix = unique("ntkill") + "."
    schema = prefix.rstrip(".")
    async with running_smtp(rcpt_delay=0.05) as smtp, publisher(prefix) as publish:
        notifier = NotifierProcess.configured(
            prefix,
            free_port(),
            smtp_host="127.0.0.1",
            smtp_port=str(smtp.port),
            smtp_security="none",
            smtp_from_address="noreply@portal.example",
            smtp_message_id_domain="portal.example",
            # Timeouts a starved SMTP sink in this process can meet (2 s ran out at load 14
            # until the attempts were spent); the lease outlasts twice the longest.
            smtp_timeout_seconds="10",
            sms_timeout_seconds="10",
            sending_lease_seconds="25",
            retry_base_seconds="0.2",
            retry_max_seconds="1",
            worker_poll_seconds="0.05",
            worker_concurrency=str(CONCURRENCY),
            kafka_session_timeout_ms=str(int(SESSION_TIMEOUT_SECONDS * 1000)),
        )
        try:
            notifier.start()
            await notifier.ready()
            customers = [Customer() for _ in range(CUSTOMERS)]
            await publish(*[c.registered() for c in customers])
            stream = [
                (customer, customer.claim_status(f"claim-{n:03d}{k}"))
                for k in range(CLAIMS_EACH)
                for n, customer in enumerate(customers)
            ]
            tail = [(c, c.claim_status("claim-tail")) for c in customers[:TAIL]]
            expected = {f"<{c.email_key(e)}@portal.example>" for c, e in stream + tail}
            tail_ids = {f"<{c.email_key(e)}@portal.example>" for c, e in tail}

            async def publish_stream() -> None:
                for start in range(0, len(stream), 4):
                    await publish(*[event for _, event in stream[start : start + 4]])
                    await asyncio.sleep(0.05)  # a stream, not one burst: pacing, not waiting

            publishing = asyncio.create_task(publish_stream())
            # Not right after an arrival (that would aim at the crash window on purpose):
            # while sends in flight are in the middle of their SMTP transaction.
            await until(lambda: _mid_stream(smtp.handler), within=30)
            notifier.kill()
            killed = time.monotonic()
            received_before_kill = len(smtp.handler.envelopes)
            stream_done_at_kill = publishing.done()
            notifier.start()
            await publishing
            await notifier.ready()
            await publish(*[event for _, event in tail])
            ready_again = time.monotonic()
            await until(lambda: _arrived(smtp.handler, tail_ids), within=TAIL_WITHIN_SECONDS)
            tail_after_ready = time.monotonic() - ready_again

            async def settled() -> list[asyncpg.Record] | None:
                """Every e-mail arrived and every delivery is final: nothing can be sent
                any more, so what the sink holds now is all it will ever hold."""
                rows = await _deliveries(dsn, schema)
                final = len(rows) == len(expected) and all(r["status"] == "sent" for r in rows)
                arrived = expected <= set(smtp.handler.message_ids())
                return rows if final and arrived else None

            rows = await until(settled, within=180)
            caught_up = time.monotonic() - killed
            message_ids = smtp.handler.message_ids()
        finally:
            notifier.stop()
            await drop_schema(dsn, schema)

    # The kill really happened in the middle of the stream.
    assert 0 < received_before_kill < len(expected)
    # Static membership: the restarted process took the killed member's place in the same
    # generation (a rebalance after the session timeout would have started a new one).
    first, restarted = notifier.group_generations()
    assert restarted == first
    # Every expected e-mail arrived, and nothing else.
    assert set(message_ids) == expected
    assert len(rows) == len(expected)
    assert {row["status"] for row in rows} == {"sent"}
    # None twice outside the crash window: a duplicate is only allowed for an attempt that
    # was in flight at the kill (recovered as outcome_unknown), and there are at most as
    # many of those as sends in flight.
    twice = {mid for mid, n in Counter(message_ids).items() if n > 1}
    # An answer the SMTP server never gave (a timeout in the mail transaction) is the same
    # window without a kill: logged `outcome_unknown: smtp answer lost (...)`.
    recovered = {f"<{row['message_key']}@portal.example>" for row in rows if row["recovered"]}
    unknown = {f"<{row['message_key']}@portal.example>" for row in rows if row["unknown"]}
    assert twice <= unknown, f"duplicates outside the crash window: {twice - unknown}"
    assert len(recovered) <= CONCURRENCY
    assert all(n <= 2 for n in Counter(message_ids).values())
    print(
        f"\nkilled after {received_before_kill} of {len(expected)} e-mails"
        f" ({'after' if stream_done_at_kill else 'while'} the events were published);"
        f" attempts in flight at the kill: {len(recovered)}; duplicates: {len(twice)};"
        f" tail delivered {tail_after_ready:.1f} s after the restart was ready,"
        f" all settled {caught_up:.1f} s after the kill"
    )


async def _arrived(handler: RecordingHandler, message_ids: set[str]) -> bool:
    return message_ids <= set(handler.message_ids())


async def _mid_stream(handler: RecordingHandler) -> bool:
    return len(handler.envelopes) >= 10 and handler.mid_transaction > 0


async def _deliveries(dsn: str, schema: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return await conn.fetch(
            "SELECT d.message_key, d.status, EXISTS (SELECT 1 FROM delivery_log l"
            " WHERE l.message_key = d.message_key AND l.detail = 'outcome_unknown')"
            " AS recovered, EXISTS (SELECT 1 FROM delivery_log l"
            " WHERE l.message_key = d.message_key AND l.detail LIKE 'outcome_unknown%')"
            " AS unknown FROM deliveries d"
        )
    finally:
        await conn.close()
