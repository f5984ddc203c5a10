"""NT-4: delivery state machine, backoff with full jitter, dead letters, code expiry."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from notifier.domain.delivery import (
    Delivery,
    DeliveryStatus,
    InvalidTransition,
    RetryPolicy,
    backoff_delay,
    begin_attempt,
    expire_if_due,
    queued,
    record_failure,
    record_sent,
    recover_stale,
    replay,
)
from notifier.domain.plan import plan_messages
from notifier.domain.ratelimit import OverLimit, RateDecision

POLICY = RetryPolicy(
    max_attempts=3, base_delay=timedelta(seconds=10), max_delay=timedelta(minutes=5)
)


def half() -> float:
    return 0.5


@pytest.fixture
def message(ev):
    return plan_messages(ev.claim_status(), ev.view())[0]


@pytest.fixture
def code_message(ev):
    return plan_messages(ev.login_code(), ev.view())[0]


def test_nt4_a_new_delivery_is_queued_and_due_at_once(message, ev):
    delivery = queued(message, ev.now)

    assert delivery.status is DeliveryStatus.QUEUED
    assert delivery.is_due(ev.now)
    assert delivery.not_after == message.not_after


def test_nt4_a_successful_attempt_ends_in_sent_with_the_provider_reference(message, ev):
    sending = begin_attempt(queued(message, ev.now), ev.now, POLICY)
    assert sending.status is DeliveryStatus.SENDING
    assert sending.attempts == 1

    sent = record_sent(sending, "provider-42", ev.now)

    assert sent.status is DeliveryStatus.SENT
    assert sent.provider_ref == "provider-42"
    assert sent.is_final


def test_nt4_a_retryable_failure_schedules_the_next_attempt_with_backoff(message, ev):
    sending = begin_attempt(queued(message, ev.now), ev.now, POLICY)

    failed = record_failure(sending, "sms http 500", ev.now, half, POLICY)

    assert failed.status is DeliveryStatus.FAILED
    assert failed.attempts == 1
    assert failed.next_attempt_at == ev.now + timedelta(seconds=5)  # U(0, 10 s) at 0.5
    assert failed.last_error == "sms http 500"
    assert not failed.is_due(ev.now)
    assert failed.is_due(ev.now + timedelta(seconds=5))


def test_nt4_failed_sends_give_up_into_the_dead_letter_store_after_max_attempts(message, ev):
    delivery = queued(message, ev.now)
    now = ev.now
    for _ in range(POLICY.max_attempts - 1):
        delivery = record_failure(
            begin_attempt(delivery, now, POLICY), "timeout", now, half, POLICY
        )
        assert delivery.status is DeliveryStatus.FAILED
        now = delivery.next_attempt_at
        assert now is not None

    dead = record_failure(begin_attempt(delivery, now, POLICY), "timeout", now, half, POLICY)

    assert dead.status is DeliveryStatus.DEAD
    assert dead.attempts == POLICY.max_attempts
    assert not dead.is_due(now + timedelta(days=1))


def test_nt4_a_permanent_failure_goes_to_the_dead_letter_store_at_once(message, ev):
    sending = begin_attempt(queued(message, ev.now), ev.now, POLICY)

    dead = record_failure(sending, "sms http 422", ev.now, half, POLICY, permanent=True)

    assert dead.status is DeliveryStatus.DEAD
    assert dead.attempts == 1


def test_nt4_operators_replay_a_dead_letter_back_into_the_queue(message, ev):
    sending = begin_attempt(queued(message, ev.now), ev.now, POLICY)
    dead = record_failure(sending, "smtp 550", ev.now, half, POLICY, permanent=True)

    again = replay(dead, ev.now + timedelta(hours=1))

    assert again.status is DeliveryStatus.QUEUED
    assert again.attempts == 0
    assert again.replays == 1
    assert again.is_due(ev.now + timedelta(hours=1))


def test_nt4_only_dead_letters_can_be_replayed(message, ev):
    with pytest.raises(InvalidTransition):
        replay(queued(message, ev.now), ev.now)


def test_nt4_sent_is_final(message, ev):
    sent = record_sent(begin_attempt(queued(message, ev.now), ev.now, POLICY), "ref", ev.now)

    with pytest.raises(InvalidTransition):
        begin_attempt(sent, ev.now, POLICY)
    with pytest.raises(InvalidTransition):
        record_failure(sent, "x", ev.now, half, POLICY)


def test_nt4_a_code_is_never_sent_after_it_expired(code_message, ev):
    delivery = queued(code_message, ev.now)
    assert code_message.not_after is not None

    expired = begin_attempt(delivery, code_message.not_after, POLICY)

    assert expired.status is DeliveryStatus.EXPIRED
    assert expired.attempts == 0


def test_nt4_a_code_whose_next_retry_falls_after_expiry_expires_instead_of_waiting(
    code_message, ev
):
    policy = RetryPolicy(
        max_attempts=5, base_delay=timedelta(minutes=10), max_delay=timedelta(hours=1)
    )
    sending = begin_attempt(queued(code_message, ev.now), ev.now, policy)

    # 0.9 * 10 min = 9 min > the code's 5 min validity
    expired = record_failure(sending, "sms http 503", ev.now, lambda: 0.9, policy)

    assert expired.status is DeliveryStatus.EXPIRED
    assert expired.last_error == "sms http 503"


def test_nt4_a_dead_code_replayed_after_expiry_still_expires_instead_of_sending(code_message, ev):
    sending = begin_attempt(queued(code_message, ev.now), ev.now, POLICY)
    dead = record_failure(sending, "x", ev.now, half, POLICY, permanent=True)
    later = ev.now + timedelta(hours=1)

    assert begin_attempt(replay(dead, later), later, POLICY).status is DeliveryStatus.EXPIRED


def test_nt4_the_expiry_sweep_expires_waiting_codes_only(code_message, ev):
    later = ev.now + timedelta(hours=1)
    delivery = queued(code_message, ev.now)

    assert expire_if_due(delivery, later).status is DeliveryStatus.EXPIRED
    assert expire_if_due(delivery, ev.now).status is DeliveryStatus.QUEUED
    sending = begin_attempt(delivery, ev.now, POLICY)
    assert expire_if_due(sending, later) is sending


def test_nt4_an_attempt_interrupted_by_a_crash_is_retried_after_its_lease(message, ev):
    sending = begin_attempt(queued(message, ev.now), ev.now, POLICY)

    assert recover_stale(sending, ev.now + timedelta(minutes=1), half, POLICY) is sending
    recovered = recover_stale(sending, ev.now + POLICY.sending_lease, half, POLICY)

    assert recovered.status is DeliveryStatus.FAILED
    assert recovered.last_error == "outcome_unknown"
    assert recovered.attempts == 1


def test_nt4_a_providers_retry_after_raises_the_backoff_floor(message, ev):
    sending = begin_attempt(queued(message, ev.now), ev.now, POLICY)

    failed = record_failure(
        sending, "429", ev.now, lambda: 0.0, POLICY, retry_after=timedelta(seconds=90)
    )

    assert failed.next_attempt_at == ev.now + timedelta(seconds=90)


def test_nt6_a_rate_limited_notice_is_deferred_without_spending_an_attempt(message, ev):
    retry_at = ev.now + timedelta(minutes=20)
    decision = RateDecision(allowed=False, retry_at=retry_at, action=OverLimit.DEFER)

    deferred = begin_attempt(queued(message, ev.now), ev.now, POLICY, decision)

    assert deferred.status is DeliveryStatus.QUEUED
    assert deferred.attempts == 0
    assert deferred.next_attempt_at == retry_at


def test_nt6_a_rate_limited_code_is_suppressed(code_message, ev):
    decision = RateDecision(allowed=False, retry_at=ev.now, action=OverLimit.DROP)

    suppressed = begin_attempt(queued(code_message, ev.now), ev.now, POLICY, decision)

    assert suppressed.status is DeliveryStatus.SUPPRESSED
    assert suppressed.last_error == "rate_limited"
    assert suppressed.is_final


def test_nt6_a_notice_deferred_past_its_horizon_expires(message, ev):
    assert message.not_after is not None
    decision = RateDecision(allowed=False, retry_at=message.not_after, action=OverLimit.DEFER)

    assert begin_attempt(queued(message, ev.now), ev.now, POLICY, decision).status is (
        DeliveryStatus.EXPIRED
    )


# ----------------------------------------------------------------------- backoff


@given(
    attempt=st.integers(min_value=1, max_value=200),
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.integers(min_value=1, max_value=600),
    cap=st.integers(min_value=600, max_value=86_400),
)
def test_nt4_full_jitter_backoff_stays_within_zero_and_the_capped_exponential(
    attempt, seed, base, cap
):
    policy = RetryPolicy(base_delay=timedelta(seconds=base), max_delay=timedelta(seconds=cap))

    delay = backoff_delay(attempt, policy, random.Random(seed).random)

    ceiling_seconds = min(cap, base * 2 ** (attempt - 1))
    assert timedelta(0) <= delay <= timedelta(seconds=ceiling_seconds)


def test_nt4_backoff_ceiling_doubles_per_attempt_until_the_cap():
    almost_one = 1.0 - 1e-12
    ceilings = [backoff_delay(n, POLICY, lambda: almost_one).total_seconds() for n in range(1, 8)]

    assert [round(c) for c in ceilings] == [10, 20, 40, 80, 160, 300, 300]


def test_nt4_backoff_uses_the_injected_random_source():
    assert backoff_delay(3, POLICY, lambda: 0.0) == timedelta(0)
    assert backoff_delay(3, POLICY, lambda: 0.25) == timedelta(seconds=10)


def test_nt4_a_random_source_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="random source"):
        backoff_delay(1, POLICY, lambda: 1.0)


def test_nt4_retry_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(base_delay=timedelta(minutes=10), max_delay=timedelta(minutes=1))


def test_nt4_delivery_is_a_value(message, ev):
    delivery = queued(message, ev.now)

    assert replace(delivery) == delivery
    assert isinstance(delivery, Delivery)
