"""Use cases of the notifier: events in -> messages planned and stored; due messages out.

Two halves that never overlap:

1. `Notifier.consume` is the Kafka consumer's handler. It runs inside the inbox
   transaction (servicekit: the event ids, these effects and then the offsets): it folds
   contact events into the contact view (NT-3), plans the messages an event triggers with
   the view (NT-2), renders each once (NT-5 guard included) and inserts it with
   `ON CONFLICT (message_key) DO NOTHING` (NT-4: one message per event, recipient and
   channel, however often the event is delivered). It never calls a provider.
2. `Worker` (a loop of its own) claims due deliveries, hands them to the channels and
   records each outcome right after the provider answered (`Notifier.claim`,
   `Notifier.attempt`). Retries, dead letters, expiry and rate limits follow
   `domain/delivery.py`, `domain/dispatch.py` and `domain/ratelimit.py`.

Every instant comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from contracts_schemas.base import Event
from prometheus_client import Counter, Histogram
from servicekit.clock import Clock
from servicekit.consumer import Delivery as Received
from servicekit.db import Connection
from servicekit.logging import get_logger

from notifier.adapters import store
from notifier.adapters.channel import Channel, PermanentSendError, RetryableSendError
from notifier.adapters.render import Renderer, RenderError
from notifier.adapters.store import DeliveryRecord, LogEntry, NewDelivery, NotReplayable
from notifier.domain import delivery as states
from notifier.domain.contacts import CONTACT_EVENT_TYPES, apply
from notifier.domain.delivery import Delivery, DeliveryStatus, RandomSource, RetryPolicy
from notifier.domain.dispatch import longest_window, start_attempts
from notifier.domain.guard import SensitiveContentError
from notifier.domain.messages import OutgoingMessage, RenderedMessage
from notifier.domain.plan import (
    DEFAULT_PLAN_SETTINGS,
    PLANNED_EVENT_TYPES,
    PlanSettings,
    plan_messages,
    withheld_values,
)
from notifier.domain.ratelimit import RateLimits, bucket_of

log = get_logger(__name__)

__all__ = ["Attempt", "NotReplayable", "Notifier", "Worker"]

TRANSITIONS = Counter(
    "notifier_deliveries_total",
    "Delivery transitions by channel and resulting status (queued, sending, sent, failed, "
    "dead, expired, suppressed, deferred)",
    ["channel", "status"],
)
SEND_SECONDS = Histogram(
    "notifier_send_seconds", "Time a provider took to answer one send", ["channel"]
)

_DB_TROUBLE = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)


@dataclass(frozen=True, slots=True)
class Attempt:
    """A delivery in SENDING, with what to send."""

    delivery: Delivery
    message: OutgoingMessage
    rendered: RenderedMessage | None


@dataclass
class Notifier:
    clock: Clock
    renderer: Renderer
    channels: Channel
    policy: RetryPolicy
    limits: RateLimits | None
    random: RandomSource
    plan_settings: PlanSettings = field(default=DEFAULT_PLAN_SETTINGS)

    # ------------------------------------------------------------------ consumer side

    async def consume(self, conn: Connection, received: Sequence[Received]) -> None:
        """Consumer handler (inside the inbox transaction): fold, plan, render, store."""
        events = [r.message for r in received if isinstance(r.message, Event)]
        relevant = [e for e in events if isinstance(e, CONTACT_EVENT_TYPES + PLANNED_EVENT_TYPES)]
        if not relevant:
            return
        now = self.clock.now()
        # Across topics only business time orders events (ARCHITECTURE.md, "Events").
        relevant.sort(key=lambda e: e.occurred_at)
        folding = {_customer(e) for e in relevant if isinstance(e, CONTACT_EVENT_TYPES)}
        planning = {_customer(e) for e in relevant if isinstance(e, PLANNED_EVENT_TYPES)}
        views = await store.lock_views(conn, folding, now)
        views.update(await store.read_views(conn, planning - folding))
        planned: list[NewDelivery] = []
        changed: set[str] = set()
        for event in relevant:
            customer = _customer(event)
            if isinstance(event, PLANNED_EVENT_TYPES):
                messages = plan_messages(event, views.get(customer), settings=self.plan_settings)
                if not messages:
                    log.info("no_message", event_type=event.type_name(), event_id=event.event_id)
                planned += [self._prepare(event, message, now) for message in messages]
            if isinstance(event, CONTACT_EVENT_TYPES):
                views[customer] = apply(views.get(customer), event)
                changed.add(customer)
        await store.save_views(conn, [v for c in sorted(changed) if (v := views.get(c))], now)
        inserted = await store.insert_deliveries(conn, planned, now)
        channel_of = {n.message.message_key: n.message.channel.value for n in planned}
        for key, status in inserted:
            TRANSITIONS.labels(channel_of[key], status.value).inc()

    def _prepare(self, event: Event, message: OutgoingMessage, now: datetime) -> NewDelivery:
        """Render once (the stored text is what every attempt sends); a text the NT-5 guard
        refuses, or a template that fails, is stored dead without text (fail closed)."""
        delivery = states.queued(message, now)
        rendered: RenderedMessage | None = None
        try:
            rendered = self.renderer.render(message, withheld=withheld_values(event))
        except SensitiveContentError as refused:
            delivery = _dead_at_birth(delivery, "nt5_guard: " + ", ".join(refused.findings))
            log.error("nt5_guard_refused", message_key=message.message_key, rules=refused.findings)
        except RenderError as error:
            delivery = _dead_at_birth(delivery, str(error))
            log.error("render_failed", message_key=message.message_key, error=str(error))
        return NewDelivery(message, delivery, bucket_of(message), rendered)

    # -------------------------------------------------------------------- worker side

    async def claim(self, pool: asyncpg.Pool, limit: int) -> list[Attempt]:
        """Claim up to `limit` due deliveries and start their attempts (one transaction).

        Stale leases are recovered, expired messages expired, rate limits applied; what is
        returned is SENDING with a lease, committed before any provider is called.
        """
        now = self.clock.now()
        async with pool.acquire() as conn, conn.transaction():
            rows = await store.claimable(conn, now, limit)
            if not rows:
                return []
            claimed = [row.claimed for row in rows]
            texts = {row.claimed.delivery.message_key: row.rendered for row in rows}
            history: dict[str, list[datetime]] = {}
            if self.limits is not None:
                buckets = {
                    bucket_of(c.message)
                    for c in claimed
                    if c.delivery.status is not DeliveryStatus.SENDING
                }
                await store.lock_buckets(conn, buckets)
                since = now - longest_window(self.limits)
                history = await store.send_times(conn, buckets, since)
            steps = start_attempts(
                claimed,
                history,
                now,
                policy=self.policy,
                limits=self.limits,
                random=self.random,
            )
            await store.apply_steps(conn, steps, now)
        for step in steps:
            TRANSITIONS.labels(step.message.channel.value, step.log).inc()
            if step.log != "sending":
                log.info(
                    "delivery_" + step.log,
                    message_key=step.message.message_key,
                    detail=step.detail,
                )
        return [Attempt(s.after, s.message, texts[s.after.message_key]) for s in steps if s.send]

    async def attempt(self, pool: asyncpg.Pool, attempt: Attempt) -> Delivery:
        """Send one claimed message and record the outcome at once."""
        before, message = attempt.delivery, attempt.message
        started = time.monotonic()
        try:
            if attempt.rendered is None:
                raise PermanentSendError("no rendered text")
            reference = await self.channels.send(message, attempt.rendered)
        except RetryableSendError as error:
            after = states.record_failure(
                before,
                error.reason,
                self.clock.now(),
                self.random,
                self.policy,
                retry_after=error.retry_after,
            )
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
        detail = _detail(after)
        if await self._record(pool, before, after, message, detail):
            TRANSITIONS.labels(message.channel.value, after.status.value).inc()
            if after.status is not DeliveryStatus.SENT:
                log.warning(
                    "delivery_" + after.status.value,
                    message_key=message.message_key,
                    attempt=after.attempts,
                    error=after.last_error,
                )
        else:
            log.warning("late_result_ignored", message_key=message.message_key)
        return after

    def _failure(self, before: Delivery, reason: str, permanent: bool) -> Delivery:
        return states.record_failure(
            before, reason, self.clock.now(), self.random, self.policy, permanent=permanent
        )

    async def _record(
        self,
        pool: asyncpg.Pool,
        before: Delivery,
        after: Delivery,
        message: OutgoingMessage,
        detail: str | None,
    ) -> bool:
        """Record right away; ride out a short database outage rather than widen the crash
        window: give up only when the lease is about to run out."""
        assert before.lease_until is not None
        pause = 0.1
        while True:
            try:
                async with pool.acquire() as conn:
                    return await store.record_result(conn, before, after, message, detail)
            except _DB_TROUBLE as trouble:
                left = before.lease_until - self.clock.now()
                if left < timedelta(seconds=pause * 2):
                    log.error("result_not_recorded", message_key=message.message_key)
                    raise
                log.warning("record_retrying", message_key=message.message_key, error=repr(trouble))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    # ------------------------------------------------------------------ operator side

    async def replay(self, pool: asyncpg.Pool, message_key: str, caller: str) -> Delivery | None:
        """Dead letter -> queued again with a fresh attempt budget (None: unknown key).

        Raises `NotReplayable` when it is not dead or has no text. A replayed code that
        has expired in the meantime expires instead of being sent (NT-4).
        """
        now = self.clock.now()

        def transition(delivery: Delivery) -> Delivery:
            try:
                return states.replay(delivery, now)
            except states.InvalidTransition:
                raise NotReplayable(f"only dead deliveries can be replayed, this one is "
                                    f"{delivery.status.value}") from None  # fmt: skip

        async with pool.acquire() as conn:
            after = await store.replay(conn, message_key, transition, now, f"replayed by {caller}")
        if after is not None:
            log.info("delivery_replayed", message_key=message_key, caller=caller)
        return after

    async def deliveries(
        self,
        conn: Connection,
        *,
        status: DeliveryStatus | None = None,
        customer_id: str | None = None,
        event_id: UUID | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        return await store.find_deliveries(
            conn, status=status, customer_id=customer_id, event_id=event_id, limit=limit
        )

    async def delivery(self, conn: Connection, message_key: str) -> DeliveryRecord | None:
        return await store.get_delivery(conn, message_key)

    async def delivery_log(self, conn: Connection, message_key: str) -> list[LogEntry]:
        return await store.log_of(conn, message_key)

    async def counts(self, conn: Connection) -> dict[str, dict[str, int]]:
        return await store.counts(conn)


def _customer(event: Event) -> str:
    customer: str = getattr(event, "customer_id")  # noqa: B009 - every planned/contact event
    return customer


def _dead_at_birth(delivery: Delivery, reason: str) -> Delivery:
    return replace(delivery, status=DeliveryStatus.DEAD, next_attempt_at=None, last_error=reason)


def _detail(after: Delivery) -> str | None:
    if after.status is DeliveryStatus.SENT:
        return f"provider_ref {after.provider_ref}"
    if after.status is DeliveryStatus.FAILED and after.next_attempt_at is not None:
        return f"{after.last_error}; next attempt at {after.next_attempt_at.isoformat()}"
    return after.last_error


class Worker:
    """The delivery loop: keeps up to `concurrency` sends in flight, claiming in chunks.

    Claims only what it can start at once, so a lease never ticks while a message waits in
    a local queue. On stop it claims nothing more and lets the sends in flight finish and
    be recorded (they are bounded by the channels' timeouts).
    """

    def __init__(
        self,
        notifier: Notifier,
        pool: asyncpg.Pool,
        *,
        concurrency: int = 8,
        poll_seconds: float = 0.5,
    ) -> None:
        self.notifier = notifier
        self.pool = pool
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self._refill_at = max(1, concurrency // 2)

    async def run(self, stop: asyncio.Event) -> None:
        in_flight: set[asyncio.Task[Delivery | None]] = set()
        try:
            while not stop.is_set():
                free = self.concurrency - len(in_flight)
                if free < self._refill_at and in_flight:
                    await _first_of(stop, in_flight, wait_for=None)
                    continue
                try:
                    attempts = await self.notifier.claim(self.pool, free)
                except (*_DB_TROUBLE, asyncpg.PostgresError) as trouble:
                    # Nothing was claimed (the transaction rolled back): try again later.
                    log.warning("claim_failed", error=repr(trouble))
                    attempts = []
                for attempt in attempts:
                    task = asyncio.create_task(self._attempt(attempt))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if attempts and len(attempts) == free:
                    # A full claim: more may be due; refill as soon as sends complete.
                    await _first_of(stop, in_flight, wait_for=None)
                else:
                    # Nothing more is due now: look again after the poll interval.
                    await _first_of(stop, set(), wait_for=self.poll_seconds)
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _attempt(self, attempt: Attempt) -> Delivery | None:
        try:
            return await self.notifier.attempt(self.pool, attempt)
        except Exception:
            # Not recorded: the lease runs out and the delivery is tried again.
            log.exception("attempt_not_recorded", message_key=attempt.message.message_key)
            return None


async def _first_of(
    stop: asyncio.Event, tasks: set[asyncio.Task[Delivery | None]], wait_for: float | None
) -> None:
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({stopper, *tasks}, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
