"""NT-6: per-recipient rate limits over a sliding window of past send times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from notifier.domain.messages import ChannelKind, MessageKind
from notifier.domain.plan import plan_messages
from notifier.domain.ratelimit import (
    DEFAULT_RATE_LIMITS,
    OverLimit,
    RateClass,
    RateRule,
    Window,
    bucket_of,
    check,
    rate_class,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
THREE_PER_10_MIN = RateRule((Window(3, 10 * MINUTE),), OverLimit.DEFER)


def test_nt6_sends_below_the_limit_are_allowed():
    assert check(THREE_PER_10_MIN, [T0, T0 + MINUTE], T0 + 2 * MINUTE).allowed


def test_nt6_the_send_over_the_limit_waits_until_the_oldest_leaves_the_window():
    sent = [T0, T0 + MINUTE, T0 + 2 * MINUTE]

    decision = check(THREE_PER_10_MIN, sent, T0 + 3 * MINUTE)

    assert not decision.allowed
    assert decision.action is OverLimit.DEFER
    assert decision.retry_at == T0 + 10 * MINUTE
    assert check(THREE_PER_10_MIN, sent, T0 + 10 * MINUTE).allowed


def test_nt6_sends_older_than_the_window_do_not_count():
    sent = [T0 - 30 * MINUTE, T0 - 20 * MINUTE, T0 - 11 * MINUTE]

    assert check(THREE_PER_10_MIN, sent, T0).allowed


def test_nt6_every_window_must_have_room_and_the_latest_retry_wins():
    rule = RateRule((Window(2, MINUTE), Window(3, 60 * MINUTE)), OverLimit.DROP)
    sent = [T0, T0 + 10 * MINUTE, T0 + 20 * MINUTE]

    decision = check(rule, sent, T0 + 30 * MINUTE)

    assert not decision.allowed
    assert decision.action is OverLimit.DROP
    assert decision.retry_at == T0 + 60 * MINUTE


def test_nt6_order_of_past_send_times_does_not_matter():
    sent = [T0 + 2 * MINUTE, T0, T0 + MINUTE]

    assert check(THREE_PER_10_MIN, sent, T0 + 3 * MINUTE).retry_at == T0 + 10 * MINUTE


def test_nt6_codes_have_their_own_stricter_bucket(ev):
    view = ev.view()
    code = plan_messages(ev.login_code(), view)[0]
    notice = plan_messages(ev.claim_status(), ev.view(ev.claim_reported(channel="sms")))[0]

    assert rate_class(code) is RateClass.CODE
    assert rate_class(notice) is RateClass.NOTICE
    assert code.recipient == notice.recipient
    assert bucket_of(code) != bucket_of(notice)
    assert DEFAULT_RATE_LIMITS.rule_for(code).on_exceed is OverLimit.DROP
    assert DEFAULT_RATE_LIMITS.rule_for(notice).on_exceed is OverLimit.DEFER


def test_nt6_default_sms_code_limit_is_five_per_quarter_hour(ev):
    code = plan_messages(ev.login_code(), ev.view())[0]
    rule = DEFAULT_RATE_LIMITS.rule_for(code)
    sent = [T0 + i * MINUTE for i in range(5)]

    assert check(rule, sent[:4], T0 + 5 * MINUTE).allowed
    decision = check(rule, sent, T0 + 5 * MINUTE)
    assert not decision.allowed
    assert decision.retry_at == T0 + 15 * MINUTE


def test_nt6_bucket_ids_hold_no_personal_data(ev):
    message = plan_messages(ev.claim_status(), ev.view())[0]

    assert message.recipient not in bucket_of(message)
    assert bucket_of(message).startswith("email:notice:")


def test_nt6_every_channel_and_class_has_a_default_rule():
    for channel in ChannelKind:
        for klass in (RateClass.CODE, RateClass.NOTICE):
            assert (channel, klass) in DEFAULT_RATE_LIMITS.rules


def test_nt6_every_planned_message_has_a_rule_and_document_letters_their_own_bucket(ev):
    for _, message in ev.every_message():
        DEFAULT_RATE_LIMITS.rule_for(message)  # no KeyError
    letter = next(m for _, m in ev.every_message() if m.kind is MessageKind.DOCUMENT_LETTER)
    rule = DEFAULT_RATE_LIMITS.rule_for(letter)

    assert bucket_of(letter).startswith("letter:document:")
    assert rule.on_exceed is OverLimit.DEFER
    assert min(w.limit for w in rule.windows) >= 20  # correspondence, not notices


def test_nt6_a_registration_answer_is_in_the_strict_bucket_against_mail_bombing(ev):
    (message,) = plan_messages(ev.registration_not_completed(), None)

    assert bucket_of(message).startswith("email:code:")
    assert DEFAULT_RATE_LIMITS.rule_for(message).on_exceed is OverLimit.DROP


@settings(max_examples=200)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=240), min_size=1, max_size=60),
)
def test_nt6_following_the_decisions_never_exceeds_the_limit_in_any_window(offsets):
    """Simulate a flood: send whenever allowed, defer otherwise; count every window."""
    rule = RateRule((Window(3, 10 * MINUTE), Window(5, 60 * MINUTE)), OverLimit.DEFER)
    sent: list[datetime] = []
    for offset in sorted(offsets):
        now = T0 + offset * MINUTE
        decision = check(rule, sent, now)
        if decision.allowed:
            sent.append(now)
        else:
            assert decision.retry_at is not None
            assert decision.retry_at > now
    for window in rule.windows:
        for t in sent:
            in_window = [s for s in sent if t - window.period < s <= t]
            assert len(in_window) <= window.limit
