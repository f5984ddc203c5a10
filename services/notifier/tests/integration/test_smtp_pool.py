"""NT-1: the e-mail channel's persistent SMTP sessions (a bounded pool per relay host),
against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from notifier.adapters.channel import PermanentSendError, RetryableSendError
from notifier.adapters.email_smtp import SmtpEmailChannel
from notifier.domain.contacts import apply
from notifier.domain.plan import plan_messages
from notifier_servers import settings_for
from servicekit.clock import FixedClock


def claim_notices(ev, renderer, n: int):
    notices = []
    for _ in range(n):
        (message,) = plan_messages(ev.claim_status(), apply(None, ev.registered()))
        notices.append((message, renderer.render(message)))
    return notices


async def test_nt1_consecutive_emails_share_one_smtp_session(smtp_server, ev, renderer):
    channel = SmtpEmailChannel(settings_for(smtp_server.port), clock=FixedClock(ev.now))
    notices = claim_notices(ev, renderer, 3)

    references = [await channel.send(message, rendered) for message, rendered in notices]

    assert smtp_server.handler.message_ids() == references
    assert channel.pool.opened == 1
    await channel.close()


async def test_nt1_concurrent_sends_open_at_most_pool_size_sessions(smtp_server, ev, renderer):
    channel = SmtpEmailChannel(
        settings_for(smtp_server.port, pool_size=2), clock=FixedClock(ev.now)
    )
    notices = claim_notices(ev, renderer, 6)

    references = await asyncio.gather(*(channel.send(m, r) for m, r in notices))

    assert sorted(smtp_server.handler.message_ids()) == sorted(references)
    assert len(set(references)) == 6
    assert channel.pool.opened <= 2
    await channel.close()


async def test_nt1_a_session_the_relay_dropped_is_replaced_and_the_message_sent_once(
    smtp_server, ev, renderer
):
    channel = SmtpEmailChannel(settings_for(smtp_server.port), clock=FixedClock(ev.now))
    first, second = claim_notices(ev, renderer, 2)
    await channel.send(*first)

    dropped = smtp_server.drop_connections()
    assert dropped == 1
    reference = await channel.send(*second)

    assert smtp_server.handler.message_ids().count(reference) == 1
    assert channel.pool.opened == 2
    await channel.close()


async def test_nt1_a_session_retires_after_its_message_cap(smtp_server, ev, renderer):
    channel = SmtpEmailChannel(
        settings_for(smtp_server.port, session_max_messages=2), clock=FixedClock(ev.now)
    )
    for message, rendered in claim_notices(ev, renderer, 5):
        await channel.send(message, rendered)

    assert len(smtp_server.handler.envelopes) == 5
    assert channel.pool.opened == 3
    await channel.close()


async def test_nt1_a_refused_recipient_leaves_the_session_usable(smtp_server, ev, renderer):
    channel = SmtpEmailChannel(settings_for(smtp_server.port), clock=FixedClock(ev.now))
    (refused,) = plan_messages(
        ev.claim_status(), apply(None, ev.registered(email="unknown@example.org"))
    )
    (accepted,) = claim_notices(ev, renderer, 1)

    with pytest.raises(PermanentSendError, match="550"):
        await channel.send(refused, renderer.render(refused))
    await channel.send(*accepted)

    assert len(smtp_server.handler.envelopes) == 1
    assert channel.pool.opened == 1
    await channel.close()


async def test_nt1_closing_the_channel_quits_its_sessions_and_sends_no_more(
    smtp_server, ev, renderer
):
    channel = SmtpEmailChannel(settings_for(smtp_server.port), clock=FixedClock(ev.now))
    first, second = claim_notices(ev, renderer, 2)
    await channel.send(*first)
    assert channel.pool.idle == 1

    await channel.close()

    assert channel.pool.idle == 0
    with pytest.raises(RetryableSendError, match="smtp transport"):
        await channel.send(*second)
    assert len(smtp_server.handler.envelopes) == 1
    assert channel.pool.opened == 1


def test_nt1_the_pool_settings_come_from_the_environment_settings():
    settings = settings_for(25, pool_size=3, pool_idle_seconds=5.0, session_max_messages=7)
    channel = SmtpEmailChannel(settings)
    assert (channel.pool.size, channel.pool.idle_seconds, channel.pool.max_messages) == (3, 5.0, 7)
    assert dataclasses.replace(settings).pool_size == 3
