"""The notifier's own view of a customer's contact data and preferences (NT-3).

The notifier never reads another service's tables: it folds identity, claims and documents
events into one `ContactView` per customer. `apply` is pure and total over `ContactEvent`.

Robustness of the fold:
- Idempotent: every change *sets* values, so applying the same event twice changes nothing.
- Identity events of one customer are one stream (one aggregate, one Kafka partition). The
  view remembers the last (aggregate id, version) it folded and ignores an identity event
  that is not newer, so a redelivered old event cannot overwrite newer contact data.
- Claim channel choices (CL-5) are kept per claim with the claim stream's version, for the
  same reason. They may arrive before the customer registered (different topics): a view
  can exist with only claim choices and no contact data yet.
- `AccountCancelled` sets `cancelled` but keeps the e-mail address: the ID-9 confirmation
  still needs it. Erasing the view's personal data afterwards is a retention job, not part
  of this fold. It also ends e-mail-instead-of-letter (ID-9, DOC-4).
- CT-4: `AddressChanged` is identity's word on the customer's postal address (identity owns
  it; a move reported to contracts reaches the notifier only this way). The address it
  replaces is the one NT-2's confirmation letter goes to, so it is planned before the
  fold (`plan.py`).
- ID-1: an address is verified by `EmailVerified` naming it; `CustomerRegistered` starts
  unverified. `ContactDetailsChanged` with a new e-mail counts as verified: identity
  announces a changed address only once the code sent to it was entered (ID-8), and
  `EmailVerified` follows in the same transaction anyway.
- DOC-4 e-mail-instead-of-letter comes from the documents context's mailbox stream. Its
  events are compared by business time (`occurred_at`), not arrival order: a redelivered
  older activation cannot undo a newer deactivation.
- A message-triggering event of a customer whose registration has not arrived yet (a
  claim's status change read before identity's events, which a backlog on identity's
  topic can cause) waits in the view (`waiting`) until an identity event makes the
  customer `known`; then it is planned (NT-2, CL-5). At most `MAX_WAITING` wait: a
  customer who never registers keeps the latest.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias, assert_never, get_args

from contracts_schemas.base import Event
from contracts_schemas.claims import ClaimNotificationChannelChosen, ClaimReported
from contracts_schemas.common import NotificationChannel, PostalAddress
from contracts_schemas.documents import (
    EmailInsteadOfLetterActivated,
    EmailInsteadOfLetterDeactivated,
)
from contracts_schemas.identity import (
    AccountCancelled,
    AddressChanged,
    ContactDetailsChanged,
    CustomerRegistered,
    EmailVerified,
)
from contracts_schemas.registry import REGISTRY
from pydantic import BaseModel, ConfigDict, Field

ContactEvent: TypeAlias = (
    CustomerRegistered
    | ContactDetailsChanged
    | AddressChanged
    | AccountCancelled
    | EmailVerified
    | ClaimReported
    | ClaimNotificationChannelChosen
    | EmailInsteadOfLetterActivated
    | EmailInsteadOfLetterDeactivated
)
IdentityEvent: TypeAlias = (
    CustomerRegistered | ContactDetailsChanged | AddressChanged | AccountCancelled | EmailVerified
)

#: The event types `apply` folds (for subscription and dispatch), read off the union.
CONTACT_EVENT_TYPES: tuple[type[ContactEvent], ...] = get_args(ContactEvent)


#: Events that wait for a customer's registration, per customer, at most.
MAX_WAITING = 100


class WaitingEvent(BaseModel):
    """A message-triggering event kept until its customer is known: its type and body."""

    model_config = ConfigDict(frozen=True)

    type: str
    data: str


class ClaimChannelChoice(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: NotificationChannel
    #: Version of the claim stream's event that set it.
    version: int


class ContactView(BaseModel):
    """What the notifier knows about how to reach one customer (NT-3)."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    #: ID-1: `email` was proven by a code (only then does it get security notices).
    email_verified: bool = False
    mobile: str | None = None
    address: PostalAddress | None = None
    #: CL-5: claim id -> the channel the customer chose for that claim's status changes.
    claim_channels: dict[str, ClaimChannelChoice] = Field(default_factory=dict)
    cancelled: bool = False
    #: DOC-4: documents go to the mailbox with an e-mail notice instead of by post.
    email_instead_of_letter: bool = False
    #: Business time of the last DOC-4 preference event folded.
    preference_changed_at: datetime | None = None
    #: Last identity event folded, for ignoring stale redeliveries.
    identity_stream: str | None = None
    identity_version: int = 0
    #: Events that trigger messages, read before the customer was known (module text).
    waiting: tuple[WaitingEvent, ...] = ()

    @property
    def known(self) -> bool:
        """An identity event was folded: the notifier knows how to reach the customer."""
        return self.identity_stream is not None

    @property
    def name(self) -> str | None:
        parts = [p for p in (self.first_name, self.last_name) if p]
        return " ".join(parts) or None

    def channel_for_claim(self, claim_id: str) -> NotificationChannel:
        """CL-5: the chosen channel; e-mail when the customer never chose."""
        choice = self.claim_channels.get(claim_id)
        return choice.channel if choice is not None else NotificationChannel.EMAIL


def wait(view: ContactView | None, customer_id: str, event: Event) -> ContactView:
    """`view` with `event` waiting for the customer to be known, once (the oldest dropped
    beyond `MAX_WAITING`)."""
    view = view or ContactView(customer_id=customer_id)
    waiting = WaitingEvent(type=event.type_name(), data=event.model_dump_json())
    if waiting in view.waiting:  # a redelivery
        return view
    return view.model_copy(update={"waiting": (*view.waiting, waiting)[-MAX_WAITING:]})


def waiting_events(view: ContactView) -> list[Event]:
    """The events waiting in `view`, decoded, in the order they came."""
    events: list[Event] = []
    for waiting in view.waiting:
        event = REGISTRY[waiting.type].model.model_validate_json(waiting.data)
        assert isinstance(event, Event)
        events.append(event)
    return events


def customer_of(event: ContactEvent) -> str:
    return event.customer_id


def apply(view: ContactView | None, event: ContactEvent) -> ContactView:
    """Fold one event into the view (NT-3). Pure; `view` is `None` for a new customer."""
    customer_id = event.customer_id
    if view is None:
        view = ContactView(customer_id=customer_id)
    elif view.customer_id != customer_id:
        raise ValueError("event concerns another customer than the view")

    match event:
        case ClaimReported() | ClaimNotificationChannelChosen():
            return _apply_claim_choice(view, event)
        case EmailInsteadOfLetterActivated() | EmailInsteadOfLetterDeactivated():
            return _apply_preference(view, event)
        case (
            CustomerRegistered()
            | ContactDetailsChanged()
            | AddressChanged()
            | AccountCancelled()
            | EmailVerified()
        ):
            return _apply_identity(view, event)
        case _:
            assert_never(event)


def _apply_identity(view: ContactView, event: IdentityEvent) -> ContactView:
    if is_stale_identity_event(view, event):
        return view
    marker = {"identity_stream": event.aggregate_id, "identity_version": event.aggregate_version}
    match event:
        case CustomerRegistered():
            return view.model_copy(
                update={
                    **marker,
                    "first_name": event.first_name,
                    "last_name": event.last_name,
                    "email": event.email,
                    "email_verified": False,
                    "mobile": event.mobile,
                    "address": event.address,
                    "cancelled": False,
                }
            )
        case ContactDetailsChanged():
            changes: dict[str, object] = dict(marker)
            if event.email is not None:
                changes["email"] = event.email
                changes["email_verified"] = True  # ID-8: announced once proven
            if event.mobile is not None:
                changes["mobile"] = event.mobile
            return view.model_copy(update=changes)
        case AddressChanged():
            return view.model_copy(update={**marker, "address": event.address})
        case EmailVerified():
            proven = view.email_verified or _same_email(event.email, view.email)
            return view.model_copy(update={**marker, "email_verified": proven})
        case AccountCancelled():
            # Keep the e-mail for the ID-9 confirmation; DOC-4 ends with it (an activation
            # that happened earlier but arrives later must not turn it back on).
            changed_at = max(filter(None, (view.preference_changed_at, event.occurred_at)))
            return view.model_copy(
                update={
                    **marker,
                    "cancelled": True,
                    "email_instead_of_letter": False,
                    "preference_changed_at": changed_at,
                }
            )
        case _:
            assert_never(event)


def _apply_preference(
    view: ContactView, event: EmailInsteadOfLetterActivated | EmailInsteadOfLetterDeactivated
) -> ContactView:
    """DOC-4, by business time: an event not newer than the last one folded is ignored."""
    if view.preference_changed_at is not None and event.occurred_at <= view.preference_changed_at:
        return view
    return view.model_copy(
        update={
            "email_instead_of_letter": isinstance(event, EmailInsteadOfLetterActivated),
            "preference_changed_at": event.occurred_at,
        }
    )


def _same_email(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().lower() == b.strip().lower()


def is_stale_identity_event(view: ContactView, event: IdentityEvent) -> bool:
    """The view already folded this identity event, or a newer one of its stream."""
    return view.identity_stream == event.aggregate_id and (
        event.aggregate_version <= view.identity_version
    )


def _apply_claim_choice(
    view: ContactView, event: ClaimReported | ClaimNotificationChannelChosen
) -> ContactView:
    current = view.claim_channels.get(event.claim_id)
    if current is not None and event.aggregate_version <= current.version:
        return view
    channel = event.notification_channel if isinstance(event, ClaimReported) else event.channel
    choices = dict(view.claim_channels)
    choices[event.claim_id] = ClaimChannelChoice(channel=channel, version=event.aggregate_version)
    return view.model_copy(update={"claim_channels": choices})
