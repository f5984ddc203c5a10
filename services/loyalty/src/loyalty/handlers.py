"""Use cases of the loyalty service: facts in, decisions taken, ledgers announced.

Each handler takes a command (or query, or the consumed messages) and a unit of work that
is already inside its transaction; none opens a connection or a transaction or writes
SQL. Balances are never stored as the truth: every statement is `build_ledger` over the
customer's facts (LOY-12/13). The service's own decisions (enrolment, redemption) are
appended to the customer's account stream at the version read TOGETHER with the facts
the decision was taken on, so two decisions taken at once cannot both stand: the second
append conflicts and `Transactions` takes that decision again on fresh state.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import assert_never

from contracts_schemas import loyalty as events
from contracts_schemas.base import Contract, Event
from servicekit.clock import Clock
from servicekit.unit_of_work import Conflict, DuplicateEvent

from loyalty.domain import facts as f
from loyalty.domain.config import LoyaltyConfig
from loyalty.domain.decisions import (
    EnrolmentRefused,
    RedemptionRefused,
    decide_enrolment,
    decide_redemption,
)
from loyalty.domain.ledger import (
    EntryKind,
    ExpiryReason,
    Ledger,
    LedgerSnapshot,
    MembershipStatus,
    build_ledger,
    expiry_warnings,
    snapshot_ledger,
)
from loyalty.translation import facts_from
from loyalty.unit_of_work import Account, LoyaltyUnitOfWork, Settled, account_stream

EVENT_NAMESPACE = uuid.UUID("5b0c7c1e-3f5e-4c3e-9a57-6c0a1f1e2d01")


def event_uuid(customer_id: str, key: str) -> uuid.UUID:
    """Deterministic: the same decision or ledger entry always has the same event id."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{customer_id}:{key}")


class UnknownReward(LookupError):
    pass


# --- commands and queries -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Enrol:
    customer_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Redeem:
    customer_id: str
    reward_id: str
    redemption_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class GetStatement:
    customer_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class GetHistory:
    customer_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class ListCustomers:
    after: str
    limit: int


@dataclasses.dataclass(frozen=True, slots=True)
class Announce:
    """One chunk of a run: announce these customers' ledgers as of `as_of`."""

    customer_ids: tuple[str, ...]
    as_of: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Announced:
    """What one chunk of a run published: its events, and the points its ledger movements
    moved (OPS-2 counts these once the chunk's transaction committed)."""

    events: int = 0
    credited: int = 0
    expired: int = 0
    forfeited: int = 0

    def __add__(self, other: Announced) -> Announced:
        return Announced(
            self.events + other.events,
            self.credited + other.credited,
            self.expired + other.expired,
            self.forfeited + other.forfeited,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ClearProjections:
    """Before a rebuild: forget the facts and the statement snapshots."""


# --- handlers -----------------------------------------------------------------------------


#: Statements fold a customer's facts from a snapshot of those that occurred at least this
#: long ago (so a late fact seldom lands before it) ...
SNAPSHOT_LAG = timedelta(days=7)
#: ... once there are at least this many of them (fewer fold in well under a millisecond).
SNAPSHOT_MIN_FACTS = 200


@dataclasses.dataclass(frozen=True, slots=True)
class _Kept:
    settled: Settled
    snapshot: LedgerSnapshot


class Snapshots:
    """This process's snapshots of long ledgers (`LedgerSnapshot`), most recently used
    first, at most `max_facts` facts' worth. A cache, never the truth: each is used only
    when a read in the same statement as the later facts finds exactly the facts it was
    folded from (`Settled`); any instance may hold its own or none."""

    def __init__(self, max_facts: int = 500_000) -> None:
        self._max_facts = max_facts
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._facts = 0

    def get(self, customer_id: str) -> _Kept | None:
        kept = self._kept.get(customer_id)
        if kept is not None:
            self._kept.move_to_end(customer_id)
        return kept

    def keep(self, customer_id: str, kept: _Kept) -> None:
        self.drop(customer_id)
        self._kept[customer_id] = kept
        self._facts += kept.snapshot.facts
        while self._facts > self._max_facts and len(self._kept) > 1:
            _, oldest = self._kept.popitem(last=False)
            self._facts -= oldest.snapshot.facts

    def drop(self, customer_id: str) -> None:
        gone = self._kept.pop(customer_id, None)
        if gone is not None:
            self._facts -= gone.snapshot.facts


@dataclasses.dataclass(frozen=True, slots=True)
class Loyalty:
    """The handlers, with what bootstrap injects: the programme and the business clock."""

    config: LoyaltyConfig
    clock: Clock
    snapshots: Snapshots = dataclasses.field(default_factory=Snapshots, compare=False)

    async def _ledger_now(self, customer_id: str, uow: LoyaltyUnitOfWork) -> tuple[Account, Ledger]:
        """The account (its later facts only, when a snapshot serves) and the ledger as of
        the service clock: the same ledger as folding every fact (LOY-12/13)."""
        now = self.clock.now()
        kept = self.snapshots.get(customer_id)
        if kept is not None and kept.settled.cut <= now:
            cut = kept.settled.cut
            account = await uow.facts.account(customer_id, after=cut, settled_at=cut)
            if account.settled == kept.settled:
                ledger = build_ledger(customer_id, account.facts, now, self.config, kept.snapshot)
                return account, ledger
            self.snapshots.drop(customer_id)  # a late fact landed before the cut
        account = await uow.facts.account(customer_id, settled_at=now - SNAPSHOT_LAG)
        assert account.settled is not None
        snapshot = None
        if account.settled.count >= SNAPSHOT_MIN_FACTS:
            snapshot = snapshot_ledger(customer_id, account.facts, account.settled.cut, self.config)
        if snapshot is not None:
            self.snapshots.keep(customer_id, _Kept(account.settled, snapshot))
        return account, build_ledger(customer_id, account.facts, now, self.config, snapshot)

    async def record_facts(self, messages: Sequence[Contract], uow: LoyaltyUnitOfWork) -> None:
        """Every fact the messages contribute, stored once per customer (LOY-12)."""
        await uow.facts.add([row for message in messages for row in facts_from(message)])

    async def statement(self, query: GetStatement, uow: LoyaltyUnitOfWork) -> Ledger:
        """LOY-10/LOY-13: the customer's statement as of the service clock."""
        _, ledger = await self._ledger_now(query.customer_id, uow)
        return ledger

    async def history(self, query: GetHistory, uow: LoyaltyUnitOfWork) -> list[f.Fact]:
        """OPS-3: the facts the customer's ledger is folded from, in business order."""
        account = await uow.facts.account(query.customer_id)
        return sorted(account.facts, key=lambda fact: (fact.occurred_at, fact.event_id))

    async def customers(self, query: ListCustomers, uow: LoyaltyUnitOfWork) -> list[str]:
        return await uow.facts.customers(query.after, query.limit)

    async def enrol(self, command: Enrol, uow: LoyaltyUnitOfWork) -> Ledger | EnrolmentRefused:
        """LOY-1: enrol the customer when identity's data makes them eligible."""
        now = self.clock.now()
        customer_id = command.customer_id
        account = await uow.facts.account(customer_id)
        ledger = build_ledger(customer_id, account.facts, now, self.config)
        registration = next((x for x in account.facts if isinstance(x, f.CustomerRegistered)), None)
        decision = decide_enrolment(
            registration,
            already_enrolled=ledger.membership.status is MembershipStatus.ENROLLED,
            account_cancelled=any(isinstance(x, f.AccountCancelled) for x in account.facts),
            now=now,
        )
        if isinstance(decision, EnrolmentRefused):
            return decision
        event_id = event_uuid(customer_id, decision.event_id)
        enrolled = dataclasses.replace(decision, event_id=str(event_id))
        await _record(
            uow,
            account,
            events.CustomerEnrolled(
                event_id=event_id,
                aggregate_id=account_stream(customer_id),
                aggregate_version=account.version + 1,
                occurred_at=decision.occurred_at,
                customer_ids=(customer_id,),
                customer_id=customer_id,
            ),
            enrolled,
        )
        return build_ledger(customer_id, (*account.facts, enrolled), now, self.config)

    async def redeem(
        self, command: Redeem, uow: LoyaltyUnitOfWork
    ) -> f.RewardRedeemed | RedemptionRefused:
        """LOY-6: redeem a catalogue reward, with a co-payment for a shortfall if allowed."""
        reward = self.config.rewards.get(command.reward_id)
        if reward is None:
            raise UnknownReward(command.reward_id)
        customer_id = command.customer_id
        account, ledger = await self._ledger_now(customer_id, uow)
        decision = decide_redemption(ledger, reward, command.redemption_id, ledger.as_of)
        if isinstance(decision, RedemptionRefused):
            return decision
        event_id = event_uuid(customer_id, decision.event_id)
        recorded = dataclasses.replace(decision, event_id=str(event_id))
        await _record(
            uow,
            account,
            events.RewardRedeemed(
                event_id=event_id,
                aggregate_id=account_stream(customer_id),
                aggregate_version=account.version + 1,
                occurred_at=decision.occurred_at,
                customer_ids=(customer_id,),
                customer_id=customer_id,
                redemption_id=command.redemption_id,
                reward_id=command.reward_id,
                points=decision.points,
                co_payment_cents=decision.co_payment_cents,
            ),
            recorded,
        )
        return recorded

    async def announce(self, command: Announce, uow: LoyaltyUnitOfWork) -> Announced:
        """LOY-2/3/5/9, one chunk of a run: publish each ledger movement and expiry warning
        once, and keep the operators' statement rows current. Returns what went out."""
        await uow.announcements.one_run_at_a_time()
        announced = Announced()
        for customer_id in command.customer_ids:
            account = await uow.facts.account(customer_id)
            ledger = build_ledger(customer_id, account.facts, command.as_of, self.config)
            messages = [*_movements(ledger), *_warnings(ledger, command.as_of, self.config)]
            fresh = await uow.announcements.first_time(customer_id, [k for k, _ in messages])
            outgoing = [message for key, message in messages if key in fresh]
            if outgoing:
                await uow.events.enqueue(outgoing)
            await uow.statements.save(
                customer_id, command.as_of, ledger.balance, ledger.membership.status.value
            )
            announced += _announced(outgoing)
        return announced

    async def clear_projections(self, command: ClearProjections, uow: LoyaltyUnitOfWork) -> None:
        """OPS-3 rebuild, first step: the projections are refilled from the topics."""
        await uow.facts.clear()
        await uow.statements.clear()


async def _record(uow: LoyaltyUnitOfWork, account: Account, event: Event, fact: f.Fact) -> None:
    """Append the decision at the version its facts were read with, and store its fact.

    Someone else recorded a decision since (`ConcurrencyConflict`), or this very decision
    (`DuplicateEvent`: a double click): either way a `Conflict`, so the decision is taken
    again on fresh state - and then sees the other one."""
    stream = account_stream(account.customer_id)
    try:
        await uow.events.append(stream, account.version, [event])
    except DuplicateEvent as exc:
        raise Conflict(f"{stream}: decision {event.event_id} recorded meanwhile") from exc
    await uow.facts.add([(account.customer_id, fact)])


Announcement = tuple[str, Event]


def _announced(outgoing: Sequence[Event]) -> Announced:
    """The events, and the points of the ledger movements among them."""
    credited = expired = forfeited = 0
    for event in outgoing:
        match event:
            case events.PointsCredited(points=points):
                credited += points
            case events.PointsExpired(points=points):
                expired += points
            case events.PointsForfeited(points=points):
                forfeited += points
    return Announced(len(outgoing), credited, expired, forfeited)


def _movements(ledger: Ledger) -> list[Announcement]:
    customer = ledger.customer_id
    lots = {lot.lot_id: lot for lot in ledger.lots}
    found: list[Announcement] = []
    for entry in ledger.history:
        common = _common(customer, entry.entry_id, entry.at)
        match entry.kind:
            case EntryKind.CREDIT:
                lot = lots[entry.entry_id]
                credited = events.PointsCredited(
                    **common,
                    lot_id=lot.lot_id,
                    points=lot.points,
                    rule=lot.rule.value,
                    credited_on=lot.credited_on,
                    expires_on=lot.expires_on,
                )
                found.append((entry.entry_id, credited))
            case EntryKind.EXPIRY:
                if entry.points:
                    assert isinstance(entry.reason, ExpiryReason)
                    expired = events.PointsExpired(
                        **common, points=-entry.points, expired_on=entry.reason.expires_on
                    )
                    found.append((entry.entry_id, expired))
            case EntryKind.FORFEIT:
                forfeited = events.PointsForfeited(**common, points=-entry.points)
                found.append((entry.entry_id, forfeited))
            case EntryKind.REDEMPTION:
                pass  # announced when decided: RewardRedeemed on the account stream
            case _:
                assert_never(entry.kind)
    return found


def _warnings(ledger: Ledger, as_of: datetime, config: LoyaltyConfig) -> list[Announcement]:
    return [
        (
            w.warning_id,
            events.PointsExpiryWarningIssued(
                **_common(ledger.customer_id, w.warning_id, as_of),
                points=w.points,
                expires_on=w.expires_on,
            ),
        )
        for w in expiry_warnings(ledger, as_of, config)
    ]


def _common(customer_id: str, key: str, at: datetime) -> dict[str, object]:
    return {
        "event_id": event_uuid(customer_id, key),
        "aggregate_id": account_stream(customer_id),
        "aggregate_version": 1,
        "occurred_at": at,
        "customer_ids": (customer_id,),
        "customer_id": customer_id,
    }
