"""The Policy aggregate (CT-1, CT-3, CT-4, CT-5), event-sourced.

State is a pure fold of the policy's events (`evolve`, `fold`). Decisions are pure
functions `(state | None, input, ..., ctx) -> list[PolicyEvent]` that either return the
new events (possibly none: a repeated input has no second effect) or raise
`UpstreamRejected` (English detail) / `CommandRejected` (German detail).

Identity and numbering
- One stream per policy number: `policy_id = policy_id_for(policy_number)` (whitespace
  removed, upper-cased). A contract re-taken after cancellation is issued again on the
  same stream, so its whole history stays in one place.
- `aggregate_version` of the n-th new event is `state.version + n`.

Time
- Events from upstream messages carry the upstream business time
  (`message.occurred_at`: when the policy was issued, the premium paid...). Events from
  customer commands carry `ctx.now`, the handler's clock reading. Nothing here reads a
  clock.

Idempotency (CT-1)
- Event ids come from `ctx.new_event_id(seed)` with seeds like `"PremiumPaid#1"`, one
  call per event. The handler derives the function from the upstream message
  (`upstream_event_ids`), so a redelivered message yields the same ids. A decision
  whose first event id is already in the stream returns no events, even if other
  events were recorded since.
- A payment id already recorded (from any message) has no second effect; the same
  payment id with a different amount is refused as a conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from contracts_schemas.base import UpstreamMessage
from contracts_schemas.common import Carrier, PolicyholderDetails, PostalAddress, ProductLine
from contracts_schemas.contracts import (
    BankDetailsChanged,
    MoveReported,
    PolicyCancelled,
    PolicyEvent,
    PolicyholdersChanged,
    PolicyIssued,
    PremiumPaid,
)
from contracts_schemas.upstream import (
    PolicyCancelledUpstream,
    PolicyholdersChangedUpstream,
    PolicyIssuedUpstream,
    PremiumPaidUpstream,
)
from servicekit.clock import berlin_date

from contracts.domain.catalogue import INSURED_VISIBILITY_LINES, Catalogue
from contracts.domain.errors import CommandRejected, ReasonCode, UpstreamRejected
from contracts.domain.iban import Iban, InvalidIban, parse_iban
from contracts.domain.mtan import (
    BANK_DETAILS_MTAN_PURPOSE,
    MtanConfirmation,
    bank_details_mtan_reference,
    require_confirmed_mtan,
)
from contracts.domain.visibility import ViewerRole, require_visible

#: Namespace of the deterministic (uuid5) event ids of the contracts service.
EVENT_ID_NAMESPACE = UUID("6f1c2d0e-8a4b-5c3d-9e7f-0a1b2c3d4e5f")

NewEventId = Callable[[str], UUID]


# --------------------------------------------------------------------------- ids


def policy_id_for(policy_number: str) -> str:
    """The aggregate id of a policy number: whitespace removed, upper-cased."""
    return "".join(policy_number.split()).upper()


def deterministic_event_ids(key: str, namespace: UUID = EVENT_ID_NAMESPACE) -> NewEventId:
    """`new_event_id` whose ids depend only on `key` and the seed (uuid5)."""

    def new_event_id(seed: str) -> UUID:
        return uuid5(namespace, f"{key}\n{seed}")

    return new_event_id


def upstream_event_ids(message: UpstreamMessage) -> NewEventId:
    """CT-1: the same upstream message always yields the same event ids: they depend on
    (source system, message id) only, on Kafka and on HTTP alike."""
    return deterministic_event_ids(f"upstream\n{message.source_system}\n{message.message_id}")


def client_key_event_ids(kind: str, customer_id: str, policy_id: str, key: str) -> NewEventId:
    """Ids of a customer's change from a key the client chose (Idempotency-Key, mTAN id):
    scoped by customer and policy, so one key used for two contracts, or by two customers,
    gives two changes."""
    return deterministic_event_ids(f"{kind}\n{customer_id}\n{policy_id}\n{key}")


@dataclass(frozen=True)
class DecisionContext:
    """What a decision needs from outside: event ids and the current time."""

    new_event_id: NewEventId
    now: datetime

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise ValueError("DecisionContext.now must be timezone-aware")

    @property
    def today(self) -> date:
        """The business date (Europe/Berlin) of `now`."""
        return berlin_date(self.now)


# --------------------------------------------------------------------------- state


class PolicyStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Term:
    """One uninterrupted period of the contract; a re-taken contract starts a new one."""

    start_date: date
    cancellation_effective_date: date | None = None


@dataclass(frozen=True)
class RecordedPayment:
    payment_id: str
    amount_cents: int
    paid_at: datetime
    point_relevant: bool


@dataclass(frozen=True)
class PolicyState:
    policy_id: str
    policy_number: str
    version: int
    status: PolicyStatus
    product_line: ProductLine
    carrier: Carrier
    point_relevant: bool
    policyholder_ids: tuple[str, ...]
    insured_person_ids: tuple[str, ...]
    visible_to_insured: bool
    start_date: date
    tariff: str
    annual_premium_cents: int
    issued_at: datetime
    terms: tuple[Term, ...]
    cancellation_effective_date: date | None = None
    #: By payment id, in the order recorded (a new dict per payment: never changed).
    payments: Mapping[str, RecordedPayment] = field(default_factory=dict)
    former_policyholder_ids: frozenset[str] = frozenset()
    iban_masked: str | None = None
    bank_details_changed_at: datetime | None = None
    postal_address: PostalAddress | None = None
    moved_on: date | None = None
    event_ids: frozenset[UUID] = field(default=frozenset(), repr=False)

    @property
    def is_cancelled(self) -> bool:
        return self.status is PolicyStatus.CANCELLED

    @property
    def visible_insured_person_ids(self) -> tuple[str, ...]:
        """CT-3: insured persons who may see the contract (bAV/bKV, if it allows it)."""
        if self.visible_to_insured and self.product_line in INSURED_VISIBILITY_LINES:
            return self.insured_person_ids
        return ()

    @property
    def concerned_customer_ids(self) -> tuple[str, ...]:
        """`customer_ids` of the policy's events: policyholders and visible insured."""
        return _unique(self.policyholder_ids, self.visible_insured_person_ids)

    @property
    def total_paid_cents(self) -> int:
        return sum(payment.amount_cents for payment in self.payments.values())

    def payment(self, payment_id: str) -> RecordedPayment | None:
        return self.payments.get(payment_id)

    def in_force_on(self, day: date) -> bool:
        """Cover runs until the end of the cancellation's effective date ("gekündigt zum")."""
        if self.cancellation_effective_date is None:
            return True
        return day <= self.cancellation_effective_date


class InconsistentHistory(ValueError):
    """The events do not form a valid history of one policy (a bug or corrupted store)."""


def _unique(*groups: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))


def evolve(state: PolicyState | None, event: PolicyEvent) -> PolicyState:
    """Apply one event to the state (the fold's step)."""
    expected_version = 1 if state is None else state.version + 1
    if event.aggregate_version != expected_version:
        raise InconsistentHistory(
            f"event {event.event_id} has version {event.aggregate_version}, "
            f"expected {expected_version}"
        )
    if state is not None and event.aggregate_id != state.policy_id:
        raise InconsistentHistory(f"event {event.event_id} belongs to {event.aggregate_id}")

    if isinstance(event, PolicyIssued):
        return _issued(state, event)
    if state is None:
        raise InconsistentHistory(f"a policy's history starts with PolicyIssued, not {event!r}")

    # One new state per event (a fold is one per event of the stream): what every event
    # sets, with what this kind of event changes.
    changes = _changes(state, event)
    changes["version"] = event.aggregate_version
    changes["event_ids"] = state.event_ids | {event.event_id}
    return _updated(state, changes)


def _updated(state: PolicyState, changes: dict[str, Any]) -> PolicyState:
    """`dataclasses.replace(state, **changes)` for the fields of PolicyState, about six
    times cheaper (a fold makes one per event; replace loops over every field and calls
    __init__ with keywords): PolicyState has no __post_init__, InitVar or init=False
    field, so its fields copied with the changed ones set are the same state."""
    new = object.__new__(PolicyState)
    fields = new.__dict__
    fields.update(state.__dict__)
    fields.update(changes)
    return new


def _changes(state: PolicyState, event: PolicyEvent) -> dict[str, Any]:
    """What an event after the first PolicyIssued changes on the state."""
    match event:
        case PremiumPaid():
            payment = RecordedPayment(
                payment_id=event.payment_id,
                amount_cents=event.amount_cents,
                paid_at=event.occurred_at,
                point_relevant=event.point_relevant,
            )
            return {"payments": {**state.payments, payment.payment_id: payment}}
        case PolicyCancelled():
            terms = (
                *state.terms[:-1],
                replace(state.terms[-1], cancellation_effective_date=event.effective_date),
            )
            return {
                "status": PolicyStatus.CANCELLED,
                "cancellation_effective_date": event.effective_date,
                "terms": terms,
            }
        case PolicyholdersChanged():
            removed = set(state.policyholder_ids) - set(event.policyholder_ids)
            return {
                "policyholder_ids": event.policyholder_ids,
                "former_policyholder_ids": (state.former_policyholder_ids | removed)
                - set(event.policyholder_ids),
            }
        case BankDetailsChanged():
            return {"iban_masked": event.iban_masked, "bank_details_changed_at": event.occurred_at}
        case MoveReported():
            return {"postal_address": event.new_address, "moved_on": event.moved_on}
    raise InconsistentHistory(f"unknown policy event {type(event).__name__}")


def _issued_fields(event: PolicyIssued) -> dict[str, Any]:
    """What an issue (first or re-taken) sets on the policy, straight from the event."""
    return {
        "policy_number": event.policy_number,
        "status": PolicyStatus.ACTIVE,
        "product_line": event.product_line,
        "carrier": event.carrier,
        "point_relevant": event.point_relevant,
        "policyholder_ids": event.policyholder_ids,
        "insured_person_ids": event.insured_person_ids,
        "visible_to_insured": event.visible_to_insured,
        "start_date": event.start_date,
        "tariff": event.tariff,
        "annual_premium_cents": event.annual_premium_cents,
        "issued_at": event.occurred_at,
    }


def _issued(state: PolicyState | None, event: PolicyIssued) -> PolicyState:
    term = Term(start_date=event.start_date)
    if state is None:
        return PolicyState(
            policy_id=event.policy_id,
            version=event.aggregate_version,
            terms=(term,),
            event_ids=frozenset({event.event_id}),
            **_issued_fields(event),
        )
    # Re-taken contract: a new term on the same stream; payments, bank details and
    # address stay, earlier policyholders who are not named again become former ones.
    removed = set(state.policyholder_ids) - set(event.policyholder_ids)
    return replace(
        state,
        version=event.aggregate_version,
        event_ids=state.event_ids | {event.event_id},
        **_issued_fields(event),
        terms=(*state.terms, term),
        cancellation_effective_date=None,
        former_policyholder_ids=(state.former_policyholder_ids | removed)
        - set(event.policyholder_ids),
    )


def fold(events: Iterable[PolicyEvent], state: PolicyState | None = None) -> PolicyState | None:
    """The state after `events` (None when there are none)."""
    for event in events:
        state = evolve(state, event)
    return state


# --------------------------------------------------------------------------- helpers


def event_seed(event_type: type[PolicyEvent], n: int = 1) -> str:
    """The seed of the `n`-th event of `event_type` an input records: given to the input's
    `NewEventId` (e.g. `upstream_event_ids(message)`), it is that event's id."""
    return f"{event_type.__name__}#{n}"


def _seen(state: PolicyState | None, event_id: UUID) -> bool:
    """The input that produces this event id was handled before (a redelivery)."""
    return state is not None and event_id in state.event_ids


def _next_version(state: PolicyState | None, n: int = 1) -> int:
    return (0 if state is None else state.version) + n


def _upstream_policy_id(message: UpstreamMessage) -> str:
    policy_id = policy_id_for(message.policy_number)
    if not policy_id:
        raise UpstreamRejected(
            ReasonCode.INVALID_POLICY_NUMBER, "policy_number contains no characters"
        )
    return policy_id


def _require_same_policy(state: PolicyState | None, policy_id: str) -> None:
    if state is not None and state.policy_id != policy_id:
        raise ValueError(f"state of {state.policy_id} passed for policy {policy_id}")


def _require_issued(state: PolicyState | None, message: UpstreamMessage) -> PolicyState:
    if state is None:
        raise UpstreamRejected(
            ReasonCode.POLICY_NOT_FOUND,
            f"no policy {message.policy_number!r} has been issued; "
            f"{type(message).__name__} {message.message_id!r} cannot be recorded",
        )
    return state


def _customer_ids(ids: tuple[str, ...], field_name: str) -> tuple[str, ...]:
    if any(not customer_id.strip() for customer_id in ids):
        raise UpstreamRejected(
            ReasonCode.INVALID_CUSTOMER_IDS, f"{field_name} contains a blank customer id"
        )
    return _unique(ids)


def _holder_details(
    details: tuple[PolicyholderDetails, ...], holders: tuple[str, ...]
) -> tuple[PolicyholderDetails, ...]:
    """ID-3: the policyholders' name, birth date and address, passed through unchanged.

    Optional (older senders omit them); when given, exactly one entry per policyholder id,
    else the message is refused - a partial or foreign entry would let identity match a
    registration against the wrong person. Personal data: never put into a refusal text.
    """
    if not details:
        return ()
    ids = [entry.customer_id for entry in details]
    if len(set(ids)) != len(ids) or set(ids) != set(holders):
        raise UpstreamRejected(
            ReasonCode.INVALID_CUSTOMER_IDS,
            "policyholders must describe each id of policyholder_ids exactly once",
        )
    return details


# --------------------------------------------------------------------------- upstream


def issue_policy(
    state: PolicyState | None,
    message: PolicyIssuedUpstream,
    catalogue: Catalogue,
    ctx: DecisionContext,
) -> list[PolicyEvent]:
    """CT-1/CT-2: record a policy issued by policy administration.

    Refused while the policy is active (duplicate issue) or when the carrier does not
    issue that product line. After a cancellation the policy may be issued again (a
    re-taken contract), for the same product line only.
    """
    policy_id = _upstream_policy_id(message)
    _require_same_policy(state, policy_id)
    event_id = ctx.new_event_id(event_seed(PolicyIssued))
    if _seen(state, event_id):
        return []
    info = catalogue.info(message.product_line)
    if not info.allows_carrier(message.carrier):
        allowed = ", ".join(carrier.value for carrier in info.carriers)
        raise UpstreamRejected(
            ReasonCode.CARRIER_MISMATCH,
            f"{message.product_line.value} policies are issued by {allowed}, "
            f"not by {message.carrier.value}",
        )
    if state is not None and not state.is_cancelled:
        raise UpstreamRejected(
            ReasonCode.ALREADY_ISSUED,
            f"policy {message.policy_number!r} is already issued and active",
        )
    if state is not None and state.product_line is not message.product_line:
        raise UpstreamRejected(
            ReasonCode.PRODUCT_LINE_MISMATCH,
            f"policy {message.policy_number!r} is a {state.product_line.value} policy; "
            f"it cannot be re-issued as {message.product_line.value}",
        )
    holders = _customer_ids(message.policyholder_ids, "policyholder_ids")
    insured = _customer_ids(message.insured_person_ids, "insured_person_ids")
    details = _holder_details(message.policyholders, holders)
    # The flag only means something for bAV/bKV (CT-3); elsewhere it is dropped.
    visible_to_insured = message.visible_to_insured and info.insured_visibility_possible
    previously_concerned = () if state is None else state.concerned_customer_ids
    return [
        PolicyIssued(
            event_id=event_id,
            aggregate_id=policy_id,
            aggregate_version=_next_version(state),
            occurred_at=message.occurred_at,
            customer_ids=_unique(
                holders, insured if visible_to_insured else (), previously_concerned
            ),
            policy_id=policy_id,
            policy_number=message.policy_number,
            product_line=message.product_line,
            carrier=message.carrier,
            point_relevant=info.point_relevant,
            policyholder_ids=holders,
            insured_person_ids=insured,
            visible_to_insured=visible_to_insured,
            start_date=message.start_date,
            tariff=message.tariff,
            annual_premium_cents=message.annual_premium_cents,
            policyholders=details,
        )
    ]


def record_premium_payment(
    state: PolicyState | None,
    message: PremiumPaidUpstream,
    catalogue: Catalogue,
    ctx: DecisionContext,
) -> list[PolicyEvent]:
    """CT-1/CT-5: record a premium payment from collections.

    Refused for an unknown policy. A payment on a cancelled policy is still recorded -
    the money was paid; loyalty decides about points (LOY-8). The event carries the
    product line, its point relevance now (CT-5) and the policyholders now (LOY-7).
    """
    policy_id = _upstream_policy_id(message)
    _require_same_policy(state, policy_id)
    state = _require_issued(state, message)
    event_id = ctx.new_event_id(event_seed(PremiumPaid))
    if _seen(state, event_id):
        return []
    recorded = state.payment(message.payment_id)
    if recorded is not None:
        if recorded.amount_cents == message.amount_cents:
            return []
        raise UpstreamRejected(
            ReasonCode.PAYMENT_CONFLICT,
            f"payment {message.payment_id!r} was recorded with {recorded.amount_cents} cents, "
            f"now {message.amount_cents} cents are reported",
        )
    return [
        PremiumPaid(
            event_id=event_id,
            aggregate_id=policy_id,
            aggregate_version=_next_version(state),
            occurred_at=message.occurred_at,
            customer_ids=state.concerned_customer_ids,
            policy_id=policy_id,
            payment_id=message.payment_id,
            product_line=state.product_line,
            point_relevant=catalogue.is_point_relevant(state.product_line),
            amount_cents=message.amount_cents,
            policyholder_ids=state.policyholder_ids,
        )
    ]


def cancel_policy(
    state: PolicyState | None, message: PolicyCancelledUpstream, ctx: DecisionContext
) -> list[PolicyEvent]:
    """CT-1: record a cancellation; refused if never issued or already cancelled."""
    policy_id = _upstream_policy_id(message)
    _require_same_policy(state, policy_id)
    state = _require_issued(state, message)
    event_id = ctx.new_event_id(event_seed(PolicyCancelled))
    if _seen(state, event_id):
        return []
    if state.is_cancelled:
        raise UpstreamRejected(
            ReasonCode.ALREADY_CANCELLED,
            f"policy {message.policy_number!r} is already cancelled "
            f"effective {state.cancellation_effective_date}",
        )
    return [
        PolicyCancelled(
            event_id=event_id,
            aggregate_id=policy_id,
            aggregate_version=_next_version(state),
            occurred_at=message.occurred_at,
            customer_ids=state.concerned_customer_ids,
            policy_id=policy_id,
            effective_date=message.effective_date,
            policyholder_ids=state.policyholder_ids,
        )
    ]


def change_policyholders(
    state: PolicyState | None, message: PolicyholdersChangedUpstream, ctx: DecisionContext
) -> list[PolicyEvent]:
    """CT-1/CT-3: record new policyholders (unchanged holders: no event).

    `customer_ids` names the previous holders too: they may lose sight of the contract.
    """
    policy_id = _upstream_policy_id(message)
    _require_same_policy(state, policy_id)
    state = _require_issued(state, message)
    event_id = ctx.new_event_id(event_seed(PolicyholdersChanged))
    if _seen(state, event_id):
        return []
    holders = _customer_ids(message.policyholder_ids, "policyholder_ids")
    details = _holder_details(message.policyholders, holders)
    if holders == state.policyholder_ids:
        return []
    return [
        PolicyholdersChanged(
            event_id=event_id,
            aggregate_id=policy_id,
            aggregate_version=_next_version(state),
            occurred_at=message.occurred_at,
            customer_ids=_unique(holders, state.concerned_customer_ids),
            policy_id=policy_id,
            policyholder_ids=holders,
            previous_policyholder_ids=state.policyholder_ids,
            effective_date=message.effective_date,
            policyholders=details,
        )
    ]


# --------------------------------------------------------------------------- customers


@dataclass(frozen=True)
class ChangeBankDetails:
    """CT-4: the customer gives a new IBAN for a policy (needs an mTAN, ID-6)."""

    customer_id: str
    account_activated: bool
    policy_id: str
    iban: str = field(repr=False)


@dataclass(frozen=True)
class ReportMove:
    """CT-4: the customer reports a move to a new postal address."""

    customer_id: str
    account_activated: bool
    policy_id: str
    new_address: PostalAddress
    moved_on: date


def _authorise_change(
    state: PolicyState | None,
    customer_id: str,
    account_activated: bool,
    policy_id: str,
    ctx: DecisionContext,
) -> PolicyState:
    """Only the sole policyholder of a contract still in force may change it.

    A customer who cannot see the contract gets the same answer as "why don't I see
    it?" (CT-3), which tells a stranger nothing - joint policyholders among them:
    `require_visible` gives the POLICYHOLDER role only to a sole holder
    (`visibility.viewer_role`) and refuses each of several with `joint_policyholders`.
    Insured persons who may see a bAV/bKV contract see it read-only.
    """
    _require_same_policy(state, policy_id)
    role = require_visible(customer_id, account_activated, state)
    assert state is not None  # require_visible refuses a missing policy
    if role is not ViewerRole.POLICYHOLDER:
        raise CommandRejected(
            ReasonCode.NOT_POLICYHOLDER,
            "Änderungen an diesem Vertrag kann nur der Versicherungsnehmer vornehmen. "
            "Bitte wenden Sie sich an Ihren Arbeitgeber.",
        )
    if not state.in_force_on(ctx.today):
        ended = state.cancellation_effective_date
        ended_text = f" zum {ended:%d.%m.%Y}" if ended is not None else ""
        raise CommandRejected(
            ReasonCode.POLICY_ENDED,
            f"Dieser Vertrag ist{ended_text} beendet. Änderungen sind online nicht mehr "
            "möglich. Bitte wenden Sie sich an Ihre Vertretung oder unseren Kundenservice.",
        )
    return state


def check_bank_details_change(
    state: PolicyState | None, command: ChangeBankDetails, ctx: DecisionContext
) -> tuple[PolicyState, Iban]:
    """CT-4: may this customer set this IBAN on this policy (before any mTAN is sent or
    used)? The sole policyholder of a contract in force, a valid SEPA IBAN."""
    state = _authorise_change(
        state, command.customer_id, command.account_activated, command.policy_id, ctx
    )
    iban = parse_iban(command.iban)
    if not iban.is_sepa:
        raise InvalidIban(
            ReasonCode.IBAN_NOT_SEPA,
            "Die Beiträge ziehen wir per SEPA-Lastschrift ein. Bitte geben Sie die IBAN "
            "eines Kontos im SEPA-Raum an.",
        )
    return state, iban


def change_bank_details(
    state: PolicyState | None,
    command: ChangeBankDetails,
    mtan: MtanConfirmation | None,
    ctx: DecisionContext,
    mtan_now: datetime | None = None,
) -> list[PolicyEvent]:
    """CT-4/ID-6: change the account premiums are collected from.

    The IBAN is validated (country length, mod-97, SEPA country) and the change must be
    confirmed by an mTAN bound to this policy and IBAN. Only the masked IBAN goes into
    the event; the handler keeps the full one (`parse_iban(command.iban).value`) in the
    service's own protected store. The mTAN's age is judged at `mtan_now` (the wall
    clock identity confirms on), `ctx.now` when not given.
    """
    state = _authorise_change(
        state, command.customer_id, command.account_activated, command.policy_id, ctx
    )
    event_id = ctx.new_event_id(event_seed(BankDetailsChanged))
    if _seen(state, event_id):
        return []
    state, iban = check_bank_details_change(state, command, ctx)
    require_confirmed_mtan(
        mtan,
        customer_id=command.customer_id,
        purpose=BANK_DETAILS_MTAN_PURPOSE,
        reference=bank_details_mtan_reference(state.policy_id, iban),
        now=mtan_now or ctx.now,
    )
    return [
        BankDetailsChanged(
            event_id=event_id,
            aggregate_id=state.policy_id,
            aggregate_version=_next_version(state),
            occurred_at=ctx.now,
            customer_ids=state.concerned_customer_ids,
            policy_id=state.policy_id,
            iban_masked=iban.masked,
        )
    ]


def report_move(
    state: PolicyState | None, command: ReportMove, ctx: DecisionContext
) -> list[PolicyEvent]:
    """CT-4: report a move; the same address and date reported again has no effect."""
    state = _authorise_change(
        state, command.customer_id, command.account_activated, command.policy_id, ctx
    )
    event_id = ctx.new_event_id(event_seed(MoveReported))
    if _seen(state, event_id):
        return []
    if state.postal_address == command.new_address and state.moved_on == command.moved_on:
        return []
    return [
        MoveReported(
            event_id=event_id,
            aggregate_id=state.policy_id,
            aggregate_version=_next_version(state),
            occurred_at=ctx.now,
            customer_ids=state.concerned_customer_ids,
            policy_id=state.policy_id,
            new_address=command.new_address,
            moved_on=command.moved_on,
        )
    ]
