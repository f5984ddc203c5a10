"""Delivery state machine of one message (NT-4). Pure: `now` and randomness are passed in.

```
             begin_attempt                  record_sent
  QUEUED ───────────────────> SENDING ─────────────────────> SENT
    ^  │                        │  │ record_failure (retryable, attempts < max)
    │  │                        │  └──────────────> FAILED(attempt n, next_attempt_at)
    │  │                        │                      │ begin_attempt when due
    │  │                        │                      └────────> SENDING ...
    │  │                        │ record_failure (permanent, or attempts == max)
    │  │                        └──────────────> DEAD  (dead-letter store, OPS-1)
    │  └─ not_after passed (at any step) ───────> EXPIRED (never sent, NT-4)
    │  └─ rate limit says drop (NT-6) ──────────> SUPPRESSED
    └──────────── replay (operator) ─────────── DEAD
```

- Backoff: exponential with full jitter, `delay = U(0, min(max_delay, base * 2**(n-1)))`
  after the n-th failed attempt; a provider's Retry-After raises the floor.
- A message whose `not_after` has passed is never sent: `begin_attempt` turns it into
  EXPIRED, and a failure whose next attempt would fall at or after `not_after` expires it
  at once instead of scheduling a pointless retry.
- SENDING is written *before* the provider is called. A SENDING row whose lease has run
  out after a crash is an attempt with unknown outcome; `recover_stale` counts it as a
  failed attempt and schedules a retry with the same message key (see the README on the
  crash window).
- Rate limits (NT-6) are decided by `ratelimit.check` and handed to `begin_attempt`:
  DEFER moves `next_attempt_at` without counting an attempt, DROP suppresses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from notifier.domain.messages import OutgoingMessage
from notifier.domain.ratelimit import OverLimit, RateDecision

#: The delivery log's word for an attempt whose outcome nobody knows: its lease ran out, or
#: the provider's answer was lost (the detail goes on after a colon). The message may have
#: arrived; it is sent again with the same key.
OUTCOME_UNKNOWN = "outcome_unknown"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    EXPIRED = "expired"
    SUPPRESSED = "suppressed"


#: No further attempt from these (DEAD only through an operator's `replay`).
FINAL_STATUSES = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.DEAD, DeliveryStatus.EXPIRED, DeliveryStatus.SUPPRESSED}
)
#: Waiting for an attempt.
WAITING_STATUSES = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.FAILED})
#: Code messages are scrubbed of their code once they reach one of these (NT-5 hygiene).
SCRUB_WHEN = frozenset({DeliveryStatus.SENT, DeliveryStatus.EXPIRED, DeliveryStatus.SUPPRESSED})


def needs_scrub(message: OutgoingMessage, status: DeliveryStatus) -> bool:
    """A final code message keeps neither its text nor its context (DEAD keeps them for a
    replay)."""
    return message.is_code and status in SCRUB_WHEN


#: A source of floats uniformly distributed in [0, 1), e.g. `random.Random(seed).random`.
RandomSource = Callable[[], float]


class InvalidTransition(ValueError):
    """The requested transition is not allowed from the delivery's current status."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=1)
    #: A SENDING delivery older than this is taken to have crashed mid-attempt.
    sending_lease: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay <= timedelta(0) or self.max_delay < self.base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Delivery:
    message_key: str
    status: DeliveryStatus
    updated_at: datetime
    not_after: datetime | None = None
    #: Attempts started since the last (re)queue.
    attempts: int = 0
    next_attempt_at: datetime | None = None
    #: Until when a SENDING attempt holds the message.
    lease_until: datetime | None = None
    #: Classification and provider status only: never message content or addresses.
    last_error: str | None = None
    provider_ref: str | None = None
    #: How often an operator replayed it from DEAD.
    replays: int = 0

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def is_due(self, now: datetime) -> bool:
        """Waiting and its time has come (a worker should call `begin_attempt`)."""
        return self.status in WAITING_STATUSES and (
            self.next_attempt_at is None or self.next_attempt_at <= now
        )

    def is_expired(self, now: datetime) -> bool:
        return self.not_after is not None and now >= self.not_after


def queued(message: OutgoingMessage, now: datetime) -> Delivery:
    """A new delivery for a freshly planned message, due at once."""
    return Delivery(
        message_key=message.message_key,
        status=DeliveryStatus.QUEUED,
        updated_at=now,
        not_after=message.not_after,
        next_attempt_at=now,
    )


def backoff_delay(attempt: int, policy: RetryPolicy, random: RandomSource) -> timedelta:
    """Full jitter after the `attempt`-th failure: uniform in [0, min(cap, base * 2**(n-1)))."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    exponent = min(attempt - 1, 62)  # beyond that every sane cap has been reached
    ceiling = min(
        policy.max_delay.total_seconds(), policy.base_delay.total_seconds() * 2.0**exponent
    )
    fraction = random()
    if not 0.0 <= fraction < 1.0:
        raise ValueError("random source must return floats in [0, 1)")
    return timedelta(seconds=ceiling * fraction)


def begin_attempt(
    delivery: Delivery,
    now: datetime,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    rate: RateDecision | None = None,
) -> Delivery:
    """Start an attempt: SENDING (call the channel), or EXPIRED / SUPPRESSED / deferred.

    Only a SENDING result may be handed to a channel.
    """
    _require(delivery, WAITING_STATUSES, "begin an attempt")
    if delivery.is_expired(now):
        return _expired(delivery, now)
    if rate is not None and not rate.allowed:
        if rate.action is OverLimit.DROP or rate.retry_at is None:
            return replace(
                delivery,
                status=DeliveryStatus.SUPPRESSED,
                updated_at=now,
                next_attempt_at=None,
                last_error="rate_limited",
            )
        if delivery.not_after is not None and rate.retry_at >= delivery.not_after:
            return _expired(delivery, now)
        return replace(delivery, updated_at=now, next_attempt_at=rate.retry_at)
    return replace(
        delivery,
        status=DeliveryStatus.SENDING,
        updated_at=now,
        attempts=delivery.attempts + 1,
        next_attempt_at=None,
        lease_until=now + policy.sending_lease,
    )


def record_sent(delivery: Delivery, provider_ref: str, now: datetime) -> Delivery:
    _require(delivery, {DeliveryStatus.SENDING}, "record a send")
    return replace(
        delivery,
        status=DeliveryStatus.SENT,
        updated_at=now,
        lease_until=None,
        provider_ref=provider_ref,
        last_error=None,
    )


def record_failure(
    delivery: Delivery,
    error: str,
    now: datetime,
    random: RandomSource,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    *,
    permanent: bool = False,
    retry_after: timedelta | None = None,
) -> Delivery:
    """The attempt failed: FAILED with the next attempt time, DEAD, or EXPIRED."""
    _require(delivery, {DeliveryStatus.SENDING}, "record a failure")
    if permanent or delivery.attempts >= policy.max_attempts:
        return replace(
            delivery,
            status=DeliveryStatus.DEAD,
            updated_at=now,
            lease_until=None,
            next_attempt_at=None,
            last_error=error,
        )
    delay = backoff_delay(delivery.attempts, policy, random)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay))
    next_at = now + delay
    if delivery.not_after is not None and next_at >= delivery.not_after:
        return replace(_expired(delivery, now), last_error=error)
    return replace(
        delivery,
        status=DeliveryStatus.FAILED,
        updated_at=now,
        lease_until=None,
        next_attempt_at=next_at,
        last_error=error,
    )


def recover_stale(
    delivery: Delivery,
    now: datetime,
    random: RandomSource,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
) -> Delivery:
    """A SENDING delivery whose lease ran out (the worker died mid-attempt).

    The provider may or may not have accepted it; it is retried with the same key.
    """
    _require(delivery, {DeliveryStatus.SENDING}, "recover")
    if delivery.lease_until is not None and now < delivery.lease_until:
        return delivery
    return record_failure(delivery, OUTCOME_UNKNOWN, now, random, policy)


def replay(delivery: Delivery, now: datetime) -> Delivery:
    """Operator replay from the dead-letter store: DEAD -> QUEUED with a fresh budget."""
    _require(delivery, {DeliveryStatus.DEAD}, "replay")
    return replace(
        delivery,
        status=DeliveryStatus.QUEUED,
        updated_at=now,
        attempts=0,
        next_attempt_at=now,
        replays=delivery.replays + 1,
    )


def expire_if_due(delivery: Delivery, now: datetime) -> Delivery:
    """Sweep: a waiting delivery past `not_after` becomes EXPIRED; anything else unchanged."""
    if delivery.status in WAITING_STATUSES and delivery.is_expired(now):
        return _expired(delivery, now)
    return delivery


def _expired(delivery: Delivery, now: datetime) -> Delivery:
    return replace(
        delivery,
        status=DeliveryStatus.EXPIRED,
        updated_at=now,
        lease_until=None,
        next_attempt_at=None,
    )


def _require(
    delivery: Delivery, allowed: set[DeliveryStatus] | frozenset[DeliveryStatus], what: str
) -> None:
    if delivery.status not in allowed:
        raise InvalidTransition(f"cannot {what} from {delivery.status.value}")
