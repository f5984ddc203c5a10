"""What a worker does with the deliveries it claimed (NT-4, NT-6). Pure.

A worker claims due deliveries (and SENDING ones whose lease ran out) and decides, for
each, the next step of the state machine in `delivery.py`:

- a SENDING delivery whose lease ran out: the worker that held it died mid-attempt; the
  attempt counts as failed with outcome unknown (`recover_stale`), and it is retried with
  the same message key (the crash window, see the README);
- a waiting delivery past `not_after`: EXPIRED, never sent (NT-4);
- otherwise the per-recipient rate limit (NT-6) over the bucket's past sends *plus the
  sends this same batch has already started*: SENDING (hand it to the channel), deferred,
  or SUPPRESSED.

The caller holds the bucket locks while it decides and records, so that two workers never
both see room for the last send of a window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from notifier.domain.delivery import (
    OUTCOME_UNKNOWN,
    Delivery,
    DeliveryStatus,
    RandomSource,
    RetryPolicy,
    begin_attempt,
    recover_stale,
)
from notifier.domain.messages import OutgoingMessage
from notifier.domain.ratelimit import RateLimits, bucket_of, check

#: Log entry of a delivery that stays waiting because of a rate limit.
DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery: Delivery
    message: OutgoingMessage


@dataclass(frozen=True, slots=True)
class Step:
    """One decided transition: `after` replaces `before`; `log` names it for the log."""

    before: Delivery
    after: Delivery
    message: OutgoingMessage
    log: str
    detail: str | None = None

    @property
    def send(self) -> bool:
        return self.after.status is DeliveryStatus.SENDING


def longest_window(limits: RateLimits) -> timedelta:
    """How far back send times matter for any rule."""
    periods = [w.period for rule in limits.rules.values() for w in rule.windows]
    return max(periods, default=timedelta(0))


def start_attempts(
    claimed: Sequence[Claimed],
    sent_at: Mapping[str, Sequence[datetime]],
    now: datetime,
    *,
    policy: RetryPolicy,
    limits: RateLimits | None,
    random: RandomSource,
) -> list[Step]:
    """Decide every claimed delivery; `sent_at` maps rate buckets to past send times."""
    taken: dict[str, list[datetime]] = {bucket: list(times) for bucket, times in sent_at.items()}
    steps: list[Step] = []
    for item in claimed:
        before, message = item.delivery, item.message
        if before.status is DeliveryStatus.SENDING:
            after = recover_stale(before, now, random, policy)
            if after is not before:
                steps.append(Step(before, after, message, after.status.value, OUTCOME_UNKNOWN))
            continue
        bucket = bucket_of(message)
        rate = None
        if limits is not None and not before.is_expired(now):
            rate = check(limits.rule_for(message), taken.get(bucket, ()), now)
        after = begin_attempt(before, now, policy, rate)
        if after.status is DeliveryStatus.SENDING:
            taken.setdefault(bucket, []).append(now)
            steps.append(Step(before, after, message, "sending", f"attempt {after.attempts}"))
        elif after.status is before.status:
            assert after.next_attempt_at is not None
            detail = f"rate limit: next attempt at {after.next_attempt_at.isoformat()}"
            steps.append(Step(before, after, message, DEFERRED, detail))
        elif after.status is DeliveryStatus.EXPIRED:
            steps.append(Step(before, after, message, after.status.value, "not_after has passed"))
        else:
            steps.append(Step(before, after, message, after.status.value, after.last_error))
    return steps
