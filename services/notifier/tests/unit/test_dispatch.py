"""NT-4/NT-6: what a worker decides for the deliveries it claimed (domain/dispatch.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from notifier.domain.delivery import DeliveryStatus, RetryPolicy, begin_attempt, queued
from notifier.domain.dispatch import Claimed, longest_window, start_attempts
from notifier.domain.plan import plan_messages
from notifier.domain.ratelimit import DEFAULT_RATE_LIMITS, bucket_of

POLICY = RetryPolicy(max_attempts=3, base_delay=timedelta(seconds=10))


def half() -> float:
    return 0.5


def claimed_code(ev, at=None, **fields):
    (message,) = plan_messages(ev.login_code(**fields), ev.view())
    return Claimed(queued(message, at or ev.now), message)


def test_nt4_a_due_delivery_starts_an_attempt_with_a_lease(ev):
    item = claimed_code(ev)

    (step,) = start_attempts(
        [item], {}, ev.now, policy=POLICY, limits=DEFAULT_RATE_LIMITS, random=half
    )

    assert step.send
    assert step.log == "sending"
    assert step.after.attempts == 1
    assert step.after.lease_until == ev.now + POLICY.sending_lease


def test_nt4_a_code_past_its_expiry_is_expired_and_never_handed_to_a_channel(ev):
    item = claimed_code(ev, expires_at=ev.now + timedelta(minutes=5))

    (step,) = start_attempts(
        [item],
        {},
        ev.now + timedelta(minutes=5),
        policy=POLICY,
        limits=DEFAULT_RATE_LIMITS,
        random=half,
    )

    assert not step.send
    assert step.after.status is DeliveryStatus.EXPIRED
    assert step.log == "expired"


def test_nt6_the_sends_of_one_batch_count_against_the_same_bucket(ev):
    """Six codes to one number claimed together: five go out, the sixth is dropped."""
    items = [claimed_code(ev, code=f"{n:06d}") for n in range(6)]
    assert len({bucket_of(i.message) for i in items}) == 1

    steps = start_attempts(
        items, {}, ev.now, policy=POLICY, limits=DEFAULT_RATE_LIMITS, random=half
    )

    assert [s.after.status for s in steps] == [DeliveryStatus.SENDING] * 5 + [
        DeliveryStatus.SUPPRESSED
    ]
    assert steps[-1].log == "suppressed"


def test_nt6_past_sends_of_the_bucket_defer_a_notice(ev):
    (message,) = plan_messages(ev.claim_status(), ev.view())
    item = Claimed(queued(message, ev.now), message)
    history = {bucket_of(message): [ev.now - timedelta(minutes=m) for m in range(10)]}

    (step,) = start_attempts(
        [item], history, ev.now, policy=POLICY, limits=DEFAULT_RATE_LIMITS, random=half
    )

    assert not step.send
    assert step.log == "deferred"
    assert step.after.status is DeliveryStatus.QUEUED
    assert step.after.attempts == 0
    assert step.after.next_attempt_at == ev.now - timedelta(minutes=9) + timedelta(hours=1)


def test_nt6_without_limits_everything_due_is_sent(ev):
    items = [claimed_code(ev, code=f"{n:06d}") for n in range(8)]

    steps = start_attempts(items, {}, ev.now, policy=POLICY, limits=None, random=half)

    assert all(s.send for s in steps)


def test_nt4_a_lease_that_ran_out_is_a_failed_attempt_with_unknown_outcome(ev):
    """The crash window: the worker died mid-send; the message is tried again, same key."""
    item = claimed_code(ev, expires_at=ev.now + timedelta(hours=1))
    sending = begin_attempt(item.delivery, ev.now, POLICY)
    later = ev.now + POLICY.sending_lease

    (step,) = start_attempts(
        [Claimed(sending, item.message)],
        {},
        later,
        policy=POLICY,
        limits=DEFAULT_RATE_LIMITS,
        random=half,
    )

    assert not step.send
    assert step.after.status is DeliveryStatus.FAILED
    assert step.after.last_error == "outcome_unknown"
    assert step.detail == "outcome_unknown"
    assert step.after.message_key == item.message.message_key


def test_nt4_a_lease_still_running_is_left_alone(ev):
    item = claimed_code(ev)
    sending = begin_attempt(item.delivery, ev.now, POLICY)

    steps = start_attempts(
        [Claimed(sending, item.message)],
        {},
        ev.now + timedelta(seconds=1),
        policy=POLICY,
        limits=DEFAULT_RATE_LIMITS,
        random=half,
    )

    assert steps == []


def test_nt4_the_last_lost_attempt_goes_to_the_dead_letters(ev):
    item = claimed_code(ev, expires_at=ev.now + timedelta(days=1))
    sending = replace(begin_attempt(item.delivery, ev.now, POLICY), attempts=POLICY.max_attempts)

    (step,) = start_attempts(
        [Claimed(sending, item.message)],
        {},
        ev.now + POLICY.sending_lease,
        policy=POLICY,
        limits=None,
        random=half,
    )

    assert step.after.status is DeliveryStatus.DEAD
    assert step.log == "dead"


def test_nt6_send_times_matter_as_far_back_as_the_longest_window():
    assert longest_window(DEFAULT_RATE_LIMITS) == timedelta(days=30)
