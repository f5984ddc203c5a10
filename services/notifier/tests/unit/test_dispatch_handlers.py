"""The dispatch handlers on the in-memory unit of work: claims, attempts, retries, dead
letters, replays (NT-4, NT-6), and the operators' reads (OPS-1)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from notifier.adapters.channel import PermanentSendError, RetryableSendError
from notifier.domain.delivery import DeliveryStatus
from notifier.handlers import reports
from notifier.handlers.dispatch import NotReplayable, ReplayDelivery, UnknownDelivery
from notifier.handlers.intake import Intake
from notifier_handlers import POLICY, Handlers, RefusingRenderer, handlers


async def queued_claim_notice(h: Handlers, ev) -> str:
    await h.consume(ev.registration, ev.claim_status())
    (record,) = await h.deliveries()
    return record.delivery.message_key


async def test_nt4_a_claim_starts_the_attempt_with_a_lease_before_anything_is_sent(ev):
    h = handlers(ev.now)
    key = await queued_claim_notice(h, ev)

    (attempt,) = await h.claim()

    assert attempt.delivery.status is DeliveryStatus.SENDING
    assert attempt.delivery.lease_until == ev.now + POLICY.sending_lease
    assert attempt.rendered is not None
    assert h.channel.sent == []
    (record,) = await h.deliveries()
    assert record.delivery.status is DeliveryStatus.SENDING
    assert record.attempted_at == ev.now
    assert await h.statuses(key) == ["queued", "sending"]


async def test_nt4_a_message_in_flight_is_not_claimed_again_while_its_lease_runs(ev):
    h = handlers(ev.now)
    await queued_claim_notice(h, ev)
    await h.claim()

    h.clock.advance(POLICY.sending_lease - timedelta(seconds=1))

    assert await h.claim() == []


async def test_nt4_a_sent_message_is_recorded_with_the_provider_reference(ev):
    h = handlers(ev.now)
    key = await queued_claim_notice(h, ev)

    (outcome,) = await h.deliver_due()

    assert outcome.after.status is DeliveryStatus.SENT
    (record,) = await h.deliveries()
    assert record.delivery.status is DeliveryStatus.SENT
    assert record.delivery.provider_ref == "ref-1"
    assert await h.statuses(key) == ["queued", "sending", "sent"]
    assert len(h.channel.sent) == 1
    assert await h.claim() == []


async def test_nt4_a_retryable_failure_waits_for_its_backoff_and_then_sends(ev):
    h = handlers(ev.now)
    key = await queued_claim_notice(h, ev)
    h.channel.fail_next(RetryableSendError("smtp transport: TimeoutError"))

    (failed,) = await h.deliver_due()

    assert failed.after.status is DeliveryStatus.FAILED
    assert failed.after.next_attempt_at is not None
    assert failed.after.next_attempt_at - ev.now <= POLICY.base_delay
    h.clock.set(failed.after.next_attempt_at)
    (sent,) = await h.deliver_due()
    assert sent.after.status is DeliveryStatus.SENT
    assert sent.after.attempts == 2
    assert await h.statuses(key) == ["queued", "sending", "failed", "sending", "sent"]


async def test_nt4_a_permanent_error_goes_to_the_dead_letters_at_once(ev):
    h = handlers(ev.now)
    await queued_claim_notice(h, ev)
    h.channel.fail_next(PermanentSendError("smtp 550: recipient unknown"))

    await h.deliver_due()

    (dead,) = await h.deliveries(status=DeliveryStatus.DEAD)
    assert dead.delivery.last_error == "smtp 550: recipient unknown"
    assert dead.delivery.attempts == 1


async def test_nt4_the_last_failed_attempt_goes_to_the_dead_letters(ev):
    h = handlers(ev.now)
    await queued_claim_notice(h, ev)
    for _ in range(POLICY.max_attempts):
        h.channel.fail_next(RetryableSendError("sms http 503"))
        (outcome,) = await h.deliver_due()
        if outcome.after.next_attempt_at is not None:
            h.clock.set(outcome.after.next_attempt_at)

    (dead,) = await h.deliveries()
    assert dead.delivery.status is DeliveryStatus.DEAD
    assert dead.delivery.attempts == POLICY.max_attempts


async def test_nt4_a_lease_that_ran_out_is_an_attempt_with_unknown_outcome_sent_again(ev):
    """The crash window: the worker died after claiming; the next claim after the lease
    counts the attempt as failed (`outcome_unknown`) and sends it again, same key."""
    h = handlers(ev.now)
    key = await queued_claim_notice(h, ev)
    (lost,) = await h.claim()  # the worker dies here

    h.clock.advance(POLICY.sending_lease)
    assert await h.claim() == []  # recovered: failed with a backoff
    (record,) = await h.deliveries()
    assert record.delivery.status is DeliveryStatus.FAILED
    assert (await h.log(key))[-1].detail == "outcome_unknown"
    assert record.delivery.next_attempt_at is not None
    h.clock.set(record.delivery.next_attempt_at)
    (outcome,) = await h.deliver_due()

    assert outcome.after.status is DeliveryStatus.SENT
    assert outcome.message.message_key == lost.message.message_key
    # The lost attempt's result, should it arrive late, cannot overwrite the newer one.
    late = await h.send(lost)
    assert await h.record(late) is False


async def test_nt4_a_code_past_its_expiry_is_expired_and_never_sent(ev):
    h = handlers(ev.now)
    await h.consume(ev.login_code(expires_at=ev.now + timedelta(minutes=1)))

    h.clock.advance(timedelta(minutes=2))
    assert await h.claim() == []

    (record,) = await h.deliveries()
    assert record.delivery.status is DeliveryStatus.EXPIRED
    assert h.channel.sent == []


async def test_nt6_the_sixth_login_code_to_one_number_within_minutes_is_dropped(ev):
    h = handlers(ev.now)
    await h.consume(*[ev.login_code(code=f"{n:06d}") for n in range(100000, 100006)])

    attempts = await h.claim()

    assert len(attempts) == 5
    statuses = sorted(r.delivery.status.value for r in await h.deliveries())
    assert statuses == ["sending"] * 5 + ["suppressed"]


async def test_nt6_a_notice_over_the_limit_waits_for_room_in_the_window(ev):
    h = handlers(ev.now)
    await h.consume(ev.registration)
    await h.consume(*[ev.claim_status(f"claim-{n}") for n in range(11)])

    assert len(await h.deliver_due()) == 10  # 10 e-mail notices per hour

    (waiting,) = await h.deliveries(status=DeliveryStatus.QUEUED)
    assert waiting.delivery.next_attempt_at == ev.now + timedelta(hours=1)
    assert (await h.log(waiting.delivery.message_key))[-1].status == "deferred"


async def test_nt4_without_rate_limits_everything_due_is_sent(ev):
    h = handlers(ev.now, rate_limits=False)
    await h.consume(*[ev.login_code(code=f"{n:06d}") for n in range(100000, 100006)])

    assert len(await h.deliver_due()) == 6


async def test_nt5_code_messages_are_scrubbed_once_sent(ev):
    h = handlers(ev.now)
    await h.consume(ev.login_code())

    await h.deliver_due()

    (record,) = await h.deliveries()
    assert record.delivery.status is DeliveryStatus.SENT
    assert not record.has_text


async def dead_letter(h: Handlers, ev) -> str:
    key = await queued_claim_notice(h, ev)
    h.channel.fail_next(PermanentSendError("smtp 550"))
    await h.deliver_due()
    return key


async def test_ops1_a_replayed_dead_letter_is_queued_with_a_fresh_budget_and_delivered(ev):
    h = handlers(ev.now)
    key = await dead_letter(h, ev)

    record = await h.transactions.execute(h.dispatch.replay, ReplayDelivery(key, "operators"))

    assert record.delivery.status is DeliveryStatus.QUEUED
    assert record.delivery.attempts == 0
    assert record.delivery.replays == 1
    assert (await h.log(key))[-1].detail == "replayed by operators"
    (outcome,) = await h.deliver_due()
    assert outcome.after.status is DeliveryStatus.SENT
    assert await h.statuses(key) == ["queued", "sending", "dead", "queued", "sending", "sent"]


async def test_ops1_only_dead_letters_can_be_replayed(ev):
    h = handlers(ev.now)
    key = await queued_claim_notice(h, ev)

    with pytest.raises(NotReplayable, match="only dead deliveries"):
        await h.transactions.execute(h.dispatch.replay, ReplayDelivery(key, "operators"))
    with pytest.raises(UnknownDelivery):
        await h.transactions.execute(h.dispatch.replay, ReplayDelivery("nope", "operators"))


async def test_nt5_a_dead_letter_keeps_its_text_but_one_the_guard_refused_cannot_be_replayed(
    ev,
):
    h = handlers(ev.now)
    await h.consume(ev.login_code(expires_at=ev.now + timedelta(minutes=10)))
    h.channel.fail_next(PermanentSendError("sms http 400"))
    await h.deliver_due()
    (dead,) = await h.deliveries(status=DeliveryStatus.DEAD)
    assert dead.has_text  # dead code messages keep their text for a replay

    h.intake = Intake(clock=h.clock, renderer=RefusingRenderer())
    await h.consume(ev.registration, ev.claim_status())
    (refused,) = [r for r in await h.deliveries(status=DeliveryStatus.DEAD) if not r.has_text]

    with pytest.raises(NotReplayable, match="no text"):
        await h.transactions.execute(
            h.dispatch.replay, ReplayDelivery(refused.delivery.message_key, "operators")
        )
    with pytest.raises(UnknownDelivery):
        await h.transactions.execute(reports.delivery_with_log, "unknown-key")


async def test_ops1_operators_read_deliveries_newest_first_and_counts(ev):
    h = handlers(ev.now)
    await h.consume(ev.registration, ev.claim_status("claim-1"))
    h.clock.advance(timedelta(minutes=1))
    await h.consume(ev.claim_status("claim-2"))

    first, second = await h.deliveries(customer_id=ev.customer_id)
    assert first.created_at > second.created_at
    assert await h.deliveries(customer_id="someone-else") == []
    assert await h.deliveries(event_id=first.event_id) == [first]
    assert await h.deliveries(limit=1) == [first]
    counts = await h.transactions.execute(reports.delivery_counts, None)
    assert counts == {"email": {"queued": 2}}


async def test_nt4_a_round_of_outcomes_is_recorded_at_once_each_fenced_on_its_attempt(ev):
    """The worker's group commit: one `record_all` for the outcomes of a round; an attempt
    that was taken over meanwhile is not written, the others are."""
    h = handlers(ev.now)
    await queued_claim_notice(h, ev)
    (lost,) = await h.claim()
    h.clock.advance(POLICY.sending_lease)
    assert await h.claim() == []  # recovered: the lost attempt was taken over
    (record,) = await h.deliveries()
    assert record.delivery.next_attempt_at is not None
    h.clock.set(record.delivery.next_attempt_at)
    (current,) = await h.claim()
    late, fresh = await h.send(lost), await h.send(current)

    written = await h.transactions.execute(h.dispatch.record_all, [late, fresh])

    assert written == [False, True]
    (sent,) = await h.deliveries()
    assert sent.delivery.status is DeliveryStatus.SENT
