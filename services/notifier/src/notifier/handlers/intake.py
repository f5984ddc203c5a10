"""Intake: the events of other services in, the messages they trigger stored (NT-2..NT-5).

`Intake.handle` is the stream subscriber's handler. It runs inside the inbox transaction
(servicekit: the event ids, these effects, and only then the Kafka offsets), in business-
time order (events of different topics are ordered by `occurred_at`, never by arrival):

1. lock the contact views of the customers whose view the batch changes (NT-3);
2. plan each triggering event's messages with the view as it stood before the event
   (NT-2), and fold contact events into the view;
3. render every message once, with the NT-5 guard (the stored text is what every attempt
   sends); a text the guard refuses, or a template that fails, is stored dead without
   text (fail closed);
4. store the messages whose key is new (NT-4: one message per triggering event, recipient
   and channel, however often the event arrives).

It never calls a provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeAlias, get_args

from contracts_schemas.base import Contract
from servicekit.clock import Clock
from servicekit.logging import get_logger

from notifier.adapters.render import Renderer, RenderError
from notifier.domain import delivery as states
from notifier.domain.contacts import (
    CONTACT_EVENT_TYPES,
    ContactEvent,
    ContactView,
    apply,
    wait,
    waiting_events,
)
from notifier.domain.delivery import Delivery, DeliveryStatus
from notifier.domain.guard import SensitiveContentError
from notifier.domain.messages import OutgoingMessage, RenderedMessage
from notifier.domain.plan import (
    DEFAULT_PLAN_SETTINGS,
    PLANNED_EVENT_TYPES,
    PlannedEvent,
    PlanSettings,
    customer_of_planned,
    plan_messages,
    withheld_values,
)
from notifier.domain.ratelimit import bucket_of
from notifier.metrics import TRANSITIONS
from notifier.unit_of_work import NewDelivery, NotifierUnitOfWork

log = get_logger(__name__)

#: Every event the notifier acts on: folded into the view, planned, or both.
NotifierEvent: TypeAlias = ContactEvent | PlannedEvent
NOTIFIER_EVENT_TYPES: tuple[type[NotifierEvent], ...] = get_args(NotifierEvent)


@dataclass(frozen=True)
class Intake:
    clock: Clock
    renderer: Renderer
    plan_settings: PlanSettings = field(default=DEFAULT_PLAN_SETTINGS)

    async def handle(self, messages: Sequence[Contract], uow: NotifierUnitOfWork) -> None:
        """Fold, plan, render, store. Messages the notifier does not act on are ignored
        (the inbox has recorded them)."""
        events = [m for m in messages if isinstance(m, NOTIFIER_EVENT_TYPES)]
        if not events:
            return
        now = self.clock.now()
        # Across topics only business time orders events (ARCHITECTURE.md, "Events").
        events.sort(key=lambda e: e.occurred_at)
        folding = {e.customer_id for e in events if isinstance(e, CONTACT_EVENT_TYPES)}
        planning = {
            c
            for e in events
            if isinstance(e, PLANNED_EVENT_TYPES) and (c := customer_of_planned(e)) is not None
        }
        views: dict[str, ContactView | None] = dict(await uow.contacts.lock(folding, now))
        views.update(await uow.contacts.read(planning - folding))
        planned: list[NewDelivery] = []
        unknown: list[tuple[str, PlannedEvent]] = []  # customers not known yet (contacts.py)
        changed: set[str] = set()
        for event in events:
            if isinstance(event, PLANNED_EVENT_TYPES):
                planner = customer_of_planned(event)
                view = views.get(planner) if planner is not None else None
                messages_ = plan_messages(event, view, settings=self.plan_settings)
                if not messages_ and planner is not None and (view is None or not view.known):
                    unknown.append((planner, event))  # nothing to plan with: no contact data
                else:
                    planned += self._prepared(event, messages_, now)
            if isinstance(event, CONTACT_EVENT_TYPES):
                customer = event.customer_id
                views[customer] = apply(views.get(customer), event)
                changed.add(customer)
        planned += await self._plan_or_wait(unknown, views, changed, uow, now)
        await uow.contacts.save([v for c in sorted(changed) if (v := views.get(c))], now)
        inserted = await uow.deliveries.add(planned, now)
        channel_of = {n.message.message_key: n.message.channel.value for n in planned}
        for key, status in inserted:
            TRANSITIONS.labels(channel_of[key], status.value).inc()

    async def _plan_or_wait(
        self,
        unknown: list[tuple[str, PlannedEvent]],
        views: dict[str, ContactView | None],
        changed: set[str],
        uow: NotifierUnitOfWork,
        now: datetime,
    ) -> list[NewDelivery]:
        """Events that planned nothing for a customer not known when they were read: planned
        again if their view (now locked: an instance folding the registration meanwhile has
        committed) is known, else kept waiting in it; then what waited in a view this batch
        made known."""
        customers = {customer for customer, _ in unknown}
        views.update(await uow.contacts.lock(customers - changed, now))
        planned: list[NewDelivery] = []
        for customer, event in unknown:
            view = views.get(customer)
            if view is not None and view.known:
                planned += self._plan(event, view, now)
                continue
            views[customer] = wait(view, customer, event)
            changed.add(customer)
            log.info("waiting_for_contact", event_type=event.type_name(), event_id=event.event_id)
        for customer in sorted(changed):
            view = views.get(customer)
            if view is not None and view.known and view.waiting:
                for waited in waiting_events(view):
                    assert isinstance(waited, PLANNED_EVENT_TYPES)
                    planned += self._plan(waited, view, now)
                views[customer] = view.model_copy(update={"waiting": ()})
        return planned

    def _plan(self, event: PlannedEvent, view: ContactView, now: datetime) -> list[NewDelivery]:
        messages = plan_messages(event, view, settings=self.plan_settings)
        return self._prepared(event, messages, now)

    def _prepared(
        self, event: PlannedEvent, messages: list[OutgoingMessage], now: datetime
    ) -> list[NewDelivery]:
        if not messages:
            log.info("no_message", event_type=event.type_name(), event_id=event.event_id)
        return [self._prepare(event, message, now) for message in messages]

    def _prepare(self, event: PlannedEvent, message: OutgoingMessage, now: datetime) -> NewDelivery:
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


def _dead_at_birth(delivery: Delivery, reason: str) -> Delivery:
    return replace(delivery, status=DeliveryStatus.DEAD, next_attempt_at=None, last_error=reason)
