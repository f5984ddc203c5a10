"""Dispatch: due messages out, one attempt at a time (NT-4, NT-6), and operators' replays.

An attempt spans two transactions with the provider call between them, never inside one:

1. `claim` (one transaction): claim up to `limit` due deliveries (`claim_due`: each row to
   one claimer, and the rate-limit buckets of what it claimed locked in the same
   statement), and decide each with `domain/dispatch.py`: a lease that ran out is a
   failed attempt with `outcome_unknown`; past `not_after` -> expired; NT-6 rate limit ->
   deferred or suppressed (the buckets locked while deciding); otherwise SENDING with a
   lease. Committed before any provider is called: BEGIN, claim, the buckets' send times,
   the transitions with their log entries, COMMIT.
2. `send` (no transaction): the channel sends; the outcome is decided by the state machine
   (sent, failed with the next attempt, dead, expired).
3. `record_all` (one transaction, right after the providers answered): the outcomes that
   completed meanwhile and their log entries in one statement, each fenced on its attempt;
   False for an attempt that was taken over meanwhile. `record` is the same for one.

`replay`: a dead letter back to the queue with a fresh attempt budget (same key).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from servicekit.clock import Clock
from servicekit.logging import get_logger

from notifier.adapters.channel import Channel, PermanentSendError, RetryableSendError
from notifier.domain import delivery as states
from notifier.domain.delivery import Delivery, DeliveryStatus, RandomSource, RetryPolicy
from notifier.domain.dispatch import Step, longest_window, start_attempts
from notifier.domain.guard import SensitiveContentError
from notifier.domain.messages import OutgoingMessage, RenderedMessage
from notifier.domain.ratelimit import RateLimits, bucket_of
from notifier.metrics import SEND_SECONDS, TRANSITIONS
from notifier.unit_of_work import AttemptResult, DeliveryRecord, NotifierUnitOfWork

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ClaimDue:
    """Claim at most `limit` due deliveries and start their attempts."""

    limit: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """A delivery in SENDING, with what to send."""

    delivery: Delivery
    message: OutgoingMessage
    rendered: RenderedMessage | None


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim decided (`steps`) and the attempts to hand to the channels."""

    steps: list[Step]
    attempts: list[Attempt]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt, to be recorded."""

    before: Delivery
    after: Delivery
    message: OutgoingMessage

    @property
    def detail(self) -> str | None:
        after = self.after
        if after.status is DeliveryStatus.SENT:
            return f"provider_ref {after.provider_ref}"
        if after.status is DeliveryStatus.FAILED and after.next_attempt_at is not None:
            return f"{after.last_error}; next attempt at {after.next_attempt_at.isoformat()}"
        return after.last_error


@dataclass(frozen=True, slots=True)
class ReplayDelivery:
    """An operator sends a dead letter again (OPS-1)."""

    message_key: str
    caller: str


class UnknownDelivery(LookupError):
    """No delivery has this message key."""


class NotReplayable(Exception):
    """The delivery is not dead, or has no text to send (the NT-5 guard refused it)."""


@dataclass(frozen=True)
class Dispatch:
    clock: Clock
    channels: Channel
    policy: RetryPolicy
    limits: RateLimits | None
    random: RandomSource

    async def claim(self, command: ClaimDue, uow: NotifierUnitOfWork) -> Claim:
        """NT-4/NT-6: claim and decide; what is returned as attempts is SENDING with a
        lease once the transaction commits."""
        now = self.clock.now()
        # With rate limits, the claim also locks the buckets of the waiting rows it claimed.
        limited = self.limits is not None
        rows = await uow.deliveries.claim_due(now, command.limit, lock_buckets=limited)
        if not rows:
            return Claim([], [])
        claimed = [row.claimed for row in rows]
        texts = {row.claimed.delivery.message_key: row.rendered for row in rows}
        history: dict[str, list[datetime]] = {}
        if self.limits is not None:
            buckets = {
                bucket_of(c.message)
                for c in claimed
                if c.delivery.status is not DeliveryStatus.SENDING
            }
            since = now - longest_window(self.limits)
            history = await uow.rate_buckets.send_times(buckets, since)
        steps = start_attempts(
            claimed, history, now, policy=self.policy, limits=self.limits, random=self.random
        )
        await uow.deliveries.apply_steps(steps, now)
        attempts = [
            Attempt(s.after, s.message, texts[s.after.message_key]) for s in steps if s.send
        ]
        return Claim(steps, attempts)

    def claimed(self, claim: Claim) -> None:
        """Count and log a committed claim."""
        for step in claim.steps:
            TRANSITIONS.labels(step.message.channel.value, step.log).inc()
            if step.log != "sending":
                log.info(
                    "delivery_" + step.log, message_key=step.message.message_key, detail=step.detail
                )

    async def send(self, attempt: Attempt) -> Outcome:
        """Hand one claimed message to its channel (outside any transaction) and decide the
        outcome: sent, failed with the next attempt, dead, or expired."""
        before, message = attempt.delivery, attempt.message
        started = time.monotonic()
        try:
            if attempt.rendered is None:
                raise PermanentSendError("no rendered text")
            reference = await self.channels.send(message, attempt.rendered)
        except RetryableSendError as error:
            after = states.record_failure(
                before, error.reason, self.clock.now(), self.random, self.policy,
                retry_after=error.retry_after,
            )  # fmt: skip
        except PermanentSendError as error:
            after = self._failure(before, error.reason, permanent=True)
        except SensitiveContentError as refused:
            after = self._failure(before, "nt5_guard: " + ", ".join(refused.findings), True)
        except Exception as error:  # a bug must not leave the delivery SENDING until the lease
            log.exception("send_crashed", message_key=message.message_key)
            after = self._failure(before, f"internal error: {type(error).__name__}", False)
        else:
            after = states.record_sent(before, reference, self.clock.now())
        SEND_SECONDS.labels(message.channel.value).observe(time.monotonic() - started)
        return Outcome(before, after, message)

    async def record(self, outcome: Outcome, uow: NotifierUnitOfWork) -> bool:
        """Write the outcome, fenced on the attempt; False when it was taken over."""
        (written,) = await self.record_all([outcome], uow)
        return written

    async def record_all(self, outcomes: Sequence[Outcome], uow: NotifierUnitOfWork) -> list[bool]:
        """Write a round of outcomes at once, each fenced on its attempt; per outcome,
        False when its attempt was taken over."""
        results = [AttemptResult(o.before, o.after, o.message, o.detail) for o in outcomes]
        written = await uow.deliveries.record_results(results)
        return [r.attempt in written for r in results]

    def recorded(self, outcome: Outcome, written: bool) -> None:
        """Count and log a committed outcome."""
        message, after = outcome.message, outcome.after
        if not written:
            log.warning("late_result_ignored", message_key=message.message_key)
            return
        TRANSITIONS.labels(message.channel.value, after.status.value).inc()
        if after.status is not DeliveryStatus.SENT:
            log.warning(
                "delivery_" + after.status.value,
                message_key=message.message_key,
                attempt=after.attempts,
                error=after.last_error,
            )

    async def replay(self, command: ReplayDelivery, uow: NotifierUnitOfWork) -> DeliveryRecord:
        """Dead letter -> queued again with a fresh attempt budget (OPS-1, NT-4).

        Raises `UnknownDelivery`, or `NotReplayable` when it is not dead or has no text. A
        replayed code that has expired in the meantime expires instead of being sent.
        """
        now = self.clock.now()
        found = await uow.deliveries.for_replay(command.message_key)
        if found is None:
            raise UnknownDelivery(command.message_key)
        if not found.has_text:
            raise NotReplayable("the message has no text to send (refused by the NT-5 guard)")
        try:
            after = states.replay(found.delivery, now)
        except states.InvalidTransition:
            raise NotReplayable(
                f"only dead deliveries can be replayed, this one is {found.delivery.status.value}"
            ) from None
        await uow.deliveries.requeue(after, f"replayed by {command.caller}", now)
        record = await uow.reports.get(command.message_key)
        assert record is not None
        log.info("delivery_replayed", message_key=command.message_key, caller=command.caller)
        return record

    def _failure(self, before: Delivery, reason: str, permanent: bool) -> Delivery:
        return states.record_failure(
            before, reason, self.clock.now(), self.random, self.policy, permanent=permanent
        )
