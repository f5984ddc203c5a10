"""The fold: one customer's facts and the Berlin calendar, in business order, into a
`Ledger`. Pure: no clock, no I/O. How each rule is read: services/loyalty/README.md."""

from __future__ import annotations

import bisect
import copy
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from servicekit.clock import berlin_date, start_of_berlin_day

from loyalty.domain.config import LoyaltyConfig
from loyalty.domain.facts import (
    AccountCancelled,
    CustomerRegistered,
    EmailInsteadOfLetterActivated,
    EmailInsteadOfLetterDeactivated,
    Enrolled,
    Fact,
    PolicyCancelled,
    PolicyholdersChanged,
    PolicyIssued,
    PremiumPaid,
    RewardRedeemed,
    ServiceUsed,
)
from loyalty.domain.ledger.rules import (
    EIL_BONUS_LOT_ID,
    EIL_BONUS_POINTS,
    FORFEIT_ENTRY_ID,
    Rule,
    aware_utc,
    campaign_lot_id,
    expiry_entry_id,
    full_years_between,
    lot_expires_on,
    loyalty_lot_id,
    loyalty_points_for,
    monthly_run_date,
    premium_lot_id,
    redemption_entry_id,
)
from loyalty.domain.ledger.statement import (
    CampaignReason,
    CreditReason,
    EilBonusReason,
    EntryKind,
    ExpiryReason,
    ForfeitReason,
    HistoryEntry,
    Ledger,
    Lot,
    LotDraw,
    LoyaltyReason,
    Membership,
    MembershipStatus,
    NextExpiry,
    PendingCredit,
    PremiumReason,
    RedemptionReason,
)

_PRIORITY: dict[type, int] = {
    CustomerRegistered: 0,
    Enrolled: 1,
    PolicyIssued: 2,
    PolicyholdersChanged: 3,
    PolicyCancelled: 4,
    PremiumPaid: 5,
    EmailInsteadOfLetterActivated: 6,
    EmailInsteadOfLetterDeactivated: 7,
    ServiceUsed: 8,
    RewardRedeemed: 9,
    AccountCancelled: 10,
}


@lru_cache(maxsize=4096)
def _run_moment(day: date) -> datetime:
    """00:00 Berlin on `day` (calendar runs); cached, the hot path asks for few dates."""
    return start_of_berlin_day(day)


def _order_key(fact: Fact) -> tuple[datetime, int, str]:
    return (fact.occurred_at, _PRIORITY[type(fact)], fact.event_id)


@dataclass(slots=True)
class _Lot:
    index: int  # its place in the fold's `lots` (and `shown`)
    lot_id: str
    rule: Rule
    reason: CreditReason
    credited_at: datetime
    credited_on: date
    expires_on: date
    points: int
    remaining: int
    frozen: Lot | None = None  # the last `freeze()`, while `remaining` is unchanged

    def draw_key(self) -> tuple[date, datetime, str]:
        return (self.expires_on, self.credited_at, self.lot_id)

    def freeze(self) -> Lot:
        """The lot as the ledger shows it; the same object while nothing changed (only
        `remaining` ever changes), so ledgers folded on from one snapshot share them."""
        frozen = self.frozen
        if frozen is None or frozen.remaining != self.remaining:
            frozen = self.frozen = Lot(*self._shown())
        return frozen

    def clone(self) -> _Lot:
        return _Lot(self.index, *self._shown(), self.frozen)

    def _shown(self) -> tuple[str, Rule, CreditReason, datetime, date, date, int, int]:
        """The fields a `Lot` shows, in its order."""
        return (
            self.lot_id,
            self.rule,
            self.reason,
            self.credited_at,
            self.credited_on,
            self.expires_on,
            self.points,
            self.remaining,
        )


@dataclass(slots=True)
class _Term:
    start: date
    end: date | None
    relevant: bool


@dataclass(slots=True)
class _Holding:
    policy_id: str
    start: date
    removed_on: date | None
    term: _Term

    def end(self) -> date | None:
        ends = [d for d in (self.removed_on, self.term.end) if d is not None]
        return min(ends) if ends else None


@dataclass(slots=True)
class _Policy:
    terms: list[_Term]
    holding: _Holding | None = None  # the customer's open holding in the latest term

    def latest_term(self) -> _Term:
        if not self.terms:  # a policy only known from holder changes: never relevant
            self.terms.append(_Term(date.min, None, relevant=False))
        return self.terms[-1]

    def pays_points_on(self, day: date) -> bool:
        """LOY-8: False when `day` is after the end of the term governing it."""
        if not self.terms:
            return True
        governing = self.terms[0]
        for term in reversed(self.terms):
            if term.start <= day:
                governing = term
                break
        return governing.end is None or day <= governing.end


@dataclass(slots=True)
class _Pending:
    run_on: date
    run_at: datetime
    lot_id: str
    points: int
    paid_on: date
    reason: PremiumReason


class _Fold:
    def __init__(self, customer_id: str, config: LoyaltyConfig, first_year: int) -> None:
        self.customer_id = customer_id
        self.config = config
        self.enrolled_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.policies: dict[str, _Policy] = {}
        self.holdings: list[_Holding] = []
        self.lots: list[_Lot] = []
        self.alive: list[_Lot] = []  # remaining > 0, sorted by draw_key
        self.own: set[int] = set()  # indexes of the lots this fold may change in place
        self.shown: list[Lot] = []  # each lot as the ledger shows it, by index ...
        self.stale: set[int] = set()  # ... but for these, changed since
        self.balance = 0
        self.history: list[HistoryEntry] = []
        self.pending: deque[_Pending] = deque()
        self.payments_seen: set[str] = set()
        self.redemptions_seen: set[str] = set()
        self.campaigns_credited: set[str] = set()
        self.eil_activation_seen = False
        self.next_year = first_year + 1
        self.next_year_at = _run_moment(date(self.next_year, 1, 1))

    @property
    def active(self) -> bool:
        return self.enrolled_at is not None and self.ended_at is None

    def copy(self) -> _Fold:
        """A fold that goes on without changing this one, in time independent of how many
        lots there are: lots are shared until one of the two changes one (`_owned`), so
        from here on neither changes a lot in place that it has not copied itself.
        Copied besides: policies and holdings (together, they share terms), the
        collections. Shared: history entries, which never change."""
        twin = copy.copy(self)
        self.own = set()
        twin.own = set()
        twin.lots = list(self.lots)
        twin.alive = list(self.alive)
        twin.shown = list(self.shown)
        twin.stale = set(self.stale)
        twin.policies, twin.holdings = copy.deepcopy((self.policies, self.holdings))
        twin.history = list(self.history)
        twin.pending = deque(self.pending)
        twin.payments_seen = set(self.payments_seen)
        twin.redemptions_seen = set(self.redemptions_seen)
        twin.campaigns_credited = set(self.campaigns_credited)
        return twin

    # calendar ----------------------------------------------------------------------

    def advance(self, until: datetime) -> None:
        """Apply every calendar moment at or before `until`, in time order."""
        while True:
            if self.pending and self.pending[0].run_at < self.next_year_at:
                head = self.pending[0]
                if head.run_at > until:
                    return
                self.monthly_run(head.run_on, head.run_at)
                continue
            if self.next_year_at > until:
                return
            self.new_year(self.next_year, self.next_year_at)
            self.next_year += 1
            self.next_year_at = _run_moment(date(self.next_year, 1, 1))

    def new_year(self, year: int, at: datetime) -> None:
        self.expire(year, at)
        day = date(year, 1, 1)
        if self.pending and self.pending[0].run_on == day:
            self.monthly_run(day, at)
        self.january_run(year, at)

    def expire(self, year: int, at: datetime) -> None:
        """LOY-5: lots credited in year-4 expire at 1 January `year` 00:00 Berlin."""
        boundary = date(year, 1, 1)
        alive = self.alive
        count = 0
        while count < len(alive) and alive[count].expires_on < boundary:
            count += 1
        if count == 0:
            return
        draws = self._take_all(count)
        del alive[:count]
        expired = sum(d.points for d in draws)
        self.balance -= expired
        expires_on = boundary - timedelta(days=1)
        self.history.append(
            HistoryEntry(
                expiry_entry_id(expires_on),
                at,
                EntryKind.EXPIRY,
                -expired,
                Rule.EXPIRY,
                ExpiryReason(expires_on, draws),
                self.balance,
            )
        )

    def monthly_run(self, run_on: date, at: datetime) -> None:
        """LOY-2: credit the payments of the previous Berlin month."""
        while self.pending and self.pending[0].run_on == run_on:
            item = self.pending.popleft()
            if not self.active:
                continue
            policy = self.policies.get(item.reason.policy_id)
            if policy is not None and not policy.pays_points_on(item.paid_on):
                continue  # LOY-8
            self.credit(item.lot_id, Rule.PREMIUM, item.reason, item.points, at, run_on)

    def january_run(self, year: int, at: datetime) -> None:
        """LOY-3: loyalty points for the longest uninterrupted relevant holding."""
        if not self.active:
            return
        day = date(year, 1, 1)
        best: _Holding | None = None
        for holding in self.holdings:
            if not holding.term.relevant or holding.start > day:
                continue
            end = holding.end()
            if end is not None and end < day:
                continue
            if best is None or (holding.start, holding.policy_id) < (best.start, best.policy_id):
                best = holding
        if best is None:
            return
        full_years = full_years_between(best.start, day)
        reason = LoyaltyReason(year, best.policy_id, best.start, full_years, full_years + 1)
        self.credit(
            loyalty_lot_id(year), Rule.LOYALTY, reason, loyalty_points_for(full_years), at, day
        )

    # lots --------------------------------------------------------------------------

    def credit(
        self,
        lot_id: str,
        rule: Rule,
        reason: CreditReason,
        points: int,
        at: datetime,
        on: date,
    ) -> None:
        index = len(self.lots)
        lot = _Lot(index, lot_id, rule, reason, at, on, lot_expires_on(on), points, points)
        self.lots.append(lot)
        self.own.add(index)
        self.shown.append(lot.freeze())
        bisect.insort(self.alive, lot, key=_Lot.draw_key)
        self.balance += points
        self.history.append(
            HistoryEntry(lot_id, at, EntryKind.CREDIT, points, rule, reason, self.balance)
        )

    def _owned(self, position: int) -> _Lot:
        """`alive[position]`, to change: copied first when it is shared with another fold
        (`copy`); its shown state is then stale."""
        lot = self.alive[position]
        if lot.index not in self.own:
            lot = lot.clone()
            self.alive[position] = self.lots[lot.index] = lot
            self.own.add(lot.index)
        self.stale.add(lot.index)
        return lot

    def _take_all(self, count: int) -> tuple[LotDraw, ...]:
        """Every point of the first `count` lots to expire (the caller drops them)."""
        draws: list[LotDraw] = []
        for position in range(count):
            lot = self._owned(position)
            draws.append(LotDraw(lot.lot_id, lot.remaining))
            lot.remaining = 0
        return tuple(draws)

    def draw(self, points: int) -> tuple[LotDraw, ...]:
        """LOY-5/LOY-6: take up to `points` from the lots expiring first."""
        alive = self.alive
        draws: list[LotDraw] = []
        left = points
        used_up = 0
        while left > 0 and used_up < len(alive):
            lot = self._owned(used_up)
            take = min(lot.remaining, left)
            lot.remaining -= take
            left -= take
            draws.append(LotDraw(lot.lot_id, take))
            if lot.remaining == 0:
                used_up += 1
        del alive[:used_up]
        self.balance -= points - left
        return tuple(draws)

    # facts -------------------------------------------------------------------------

    def apply(self, fact: Fact) -> None:
        match fact:
            case PremiumPaid():
                self.premium_paid(fact)
            case PolicyIssued():
                self.policy_issued(fact)
            case PolicyholdersChanged():
                self.policyholders_changed(fact)
            case PolicyCancelled():
                self.policy_cancelled(fact)
            case Enrolled() if fact.customer_id == self.customer_id:
                if self.enrolled_at is None and self.ended_at is None:
                    self.enrolled_at = fact.occurred_at
            case EmailInsteadOfLetterActivated() if fact.customer_id == self.customer_id:
                self.eil_activated(fact)
            case ServiceUsed() if fact.customer_id == self.customer_id:
                self.service_used(fact)
            case RewardRedeemed() if fact.customer_id == self.customer_id:
                self.reward_redeemed(fact)
            case AccountCancelled() if fact.customer_id == self.customer_id:
                self.account_cancelled(fact)
            case _:
                pass  # registrations, deactivations, other customers' facts

    def premium_paid(self, fact: PremiumPaid) -> None:
        """LOY-2 / LOY-7: each enrolled policyholder earns the full points."""
        if self.customer_id not in fact.policyholder_ids:
            return
        if fact.payment_id in self.payments_seen:
            return
        self.payments_seen.add(fact.payment_id)
        if not self.active or not fact.point_relevant:
            return
        full_euros = max(fact.amount_cents, 0) // 100
        rate = self.config.premium_rate(fact.product_line)
        points = full_euros * rate.numerator // rate.denominator  # floor, rate >= 0
        if points <= 0:
            return
        paid_on = berlin_date(fact.occurred_at)
        run_on = monthly_run_date(paid_on)
        reason = PremiumReason(
            fact.payment_id,
            fact.event_id,
            fact.policy_id,
            fact.product_line,
            fact.occurred_at,
            fact.amount_cents,
            full_euros,
            rate,
        )
        self.pending.append(
            _Pending(
                run_on,
                _run_moment(run_on),
                premium_lot_id(fact.payment_id),
                points,
                paid_on,
                reason,
            )
        )

    def policy_issued(self, fact: PolicyIssued) -> None:
        policy = self.policies.get(fact.policy_id)
        if policy is None:
            policy = self.policies[fact.policy_id] = _Policy([])
        elif policy.terms and policy.terms[-1].end is None:
            policy.terms[-1].end = fact.start_date  # issued again: the holding restarts
        term = _Term(fact.start_date, None, fact.point_relevant)
        policy.terms.append(term)
        policy.holding = None
        if self.customer_id in fact.policyholder_ids:
            policy.holding = _Holding(fact.policy_id, fact.start_date, None, term)
            self.holdings.append(policy.holding)

    def policyholders_changed(self, fact: PolicyholdersChanged) -> None:
        policy = self.policies.get(fact.policy_id)
        holds_now = self.customer_id in fact.policyholder_ids
        if policy is None:
            if not holds_now:
                return
            policy = self.policies[fact.policy_id] = _Policy([])
        if holds_now and policy.holding is None:
            term = policy.latest_term()
            policy.holding = _Holding(fact.policy_id, fact.effective_date, None, term)
            self.holdings.append(policy.holding)
        elif not holds_now and policy.holding is not None:
            policy.holding.removed_on = fact.effective_date
            policy.holding = None

    def policy_cancelled(self, fact: PolicyCancelled) -> None:
        policy = self.policies.get(fact.policy_id)
        if policy is None:
            policy = self.policies[fact.policy_id] = _Policy([])
        if policy.terms:
            policy.terms[-1].end = fact.effective_date
        else:
            policy.terms.append(_Term(date.min, fact.effective_date, relevant=False))

    def eil_activated(self, fact: EmailInsteadOfLetterActivated) -> None:
        """LOY-4: only the first activation, strictly after enrolment, earns the bonus."""
        if self.eil_activation_seen:
            return
        self.eil_activation_seen = True
        if self.enrolled_at is None or not self.active:
            return
        if not self.enrolled_at < fact.occurred_at:
            return
        reason = EilBonusReason(fact.event_id, fact.occurred_at, self.enrolled_at)
        on = berlin_date(fact.occurred_at)
        self.credit(
            EIL_BONUS_LOT_ID,
            Rule.EMAIL_INSTEAD_OF_LETTER,
            reason,
            EIL_BONUS_POINTS,
            fact.occurred_at,
            on,
        )

    def service_used(self, fact: ServiceUsed) -> None:
        """LOY-11: campaign points, once per customer and campaign."""
        if not self.active:
            return
        day = berlin_date(fact.occurred_at)
        for campaign in self.config.campaigns_for(fact.action):
            if campaign.campaign_id in self.campaigns_credited or not campaign.active_on(day):
                continue
            self.campaigns_credited.add(campaign.campaign_id)
            reason = CampaignReason(
                campaign.campaign_id, fact.action, fact.event_id, fact.occurred_at
            )
            self.credit(
                campaign_lot_id(campaign.campaign_id),
                Rule.CAMPAIGN,
                reason,
                campaign.points,
                fact.occurred_at,
                day,
            )

    def reward_redeemed(self, fact: RewardRedeemed) -> None:
        """LOY-6: take the points from the lots expiring first (LOY-5)."""
        if fact.redemption_id in self.redemptions_seen:
            return
        self.redemptions_seen.add(fact.redemption_id)
        requested = max(fact.points, 0)
        draws = self.draw(requested)
        drawn = sum(d.points for d in draws)
        reason = RedemptionReason(
            fact.redemption_id,
            fact.reward_id,
            requested,
            fact.co_payment_cents,
            draws,
            requested - drawn,
        )
        self.history.append(
            HistoryEntry(
                redemption_entry_id(fact.redemption_id),
                fact.occurred_at,
                EntryKind.REDEMPTION,
                -drawn,
                Rule.REDEMPTION,
                reason,
                self.balance,
            )
        )

    def account_cancelled(self, fact: AccountCancelled) -> None:
        """LOY-9: membership ends, every point is forfeited, nothing pends any more."""
        if self.ended_at is not None:
            return
        self.ended_at = fact.occurred_at
        self.pending.clear()
        if self.enrolled_at is None:
            return
        draws = self._take_all(len(self.alive))
        self.alive.clear()
        forfeited = self.balance
        self.balance = 0
        self.history.append(
            HistoryEntry(
                FORFEIT_ENTRY_ID,
                fact.occurred_at,
                EntryKind.FORFEIT,
                -forfeited,
                Rule.FORFEIT,
                ForfeitReason(fact.event_id, draws),
                0,
            )
        )

    # result ------------------------------------------------------------------------

    def ledger(self, as_of: datetime) -> Ledger:
        if self.ended_at is not None:
            membership = Membership(MembershipStatus.ENDED, self.enrolled_at, self.ended_at)
        elif self.enrolled_at is not None:
            membership = Membership(MembershipStatus.ENROLLED, self.enrolled_at)
        else:
            membership = Membership(MembershipStatus.NOT_ENROLLED)
        next_expiry = None
        if self.alive:
            first = self.alive[0].expires_on
            points = 0
            for lot in self.alive:  # sorted by expiry: the first ones only
                if lot.expires_on != first:
                    break
                points += lot.remaining
            next_expiry = NextExpiry(first, points)
        pending = tuple(
            PendingCredit(item.lot_id, item.run_on, item.points, item.reason)
            for item in self.pending
            if self.active and self._still_earns(item)
        )
        return Ledger(
            customer_id=self.customer_id,
            as_of=as_of,
            membership=membership,
            balance=self.balance,
            lots=self.show(),
            next_expiry=next_expiry,
            pending=pending,
            history=tuple(self.history),
        )

    def show(self) -> tuple[Lot, ...]:
        """Every lot as the ledger shows it (the same `Lot` objects while unchanged, so
        ledgers folded on from one snapshot share them)."""
        shown = self.shown
        for index in self.stale:
            shown[index] = self.lots[index].freeze()
        self.stale.clear()
        return tuple(shown)

    def _still_earns(self, item: _Pending) -> bool:
        policy = self.policies.get(item.reason.policy_id)
        return policy is None or policy.pays_points_on(item.paid_on)


def _canonical(fact: Fact) -> tuple[datetime, int, str]:
    return (fact.occurred_at, _PRIORITY[type(fact)], repr(fact))


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """The fold of every fact of `customer_id` that occurred at or before `cut` (`facts`
    distinct facts), under `config`: `build_ledger(..., since=snapshot)` goes on from it
    with the later facts only, and gives exactly what folding all the facts gives. Never
    changed by that (it goes on from a copy)."""

    customer_id: str
    cut: datetime
    facts: int
    config: LoyaltyConfig
    fold: _Fold


def _in_order(facts: Iterable[Fact], after: datetime | None, until: datetime) -> list[Fact]:
    """The distinct facts (interpretation 1) with after < occurred_at <= until, in
    business order."""
    unique: dict[str, Fact] = {}
    for fact in facts:
        if fact.occurred_at > until or (after is not None and fact.occurred_at <= after):
            continue
        known = unique.get(fact.event_id)
        if known is None or (known != fact and _canonical(fact) < _canonical(known)):
            unique[fact.event_id] = fact
    return sorted(unique.values(), key=_order_key)


def _fold(fold: _Fold, ordered: list[Fact]) -> _Fold:
    for fact in ordered:
        fold.advance(fact.occurred_at)
        fold.apply(fact)
    return fold


def snapshot_ledger(
    customer_id: str, facts: Iterable[Fact], cut: datetime, config: LoyaltyConfig
) -> LedgerSnapshot | None:
    """The fold of the facts that occurred at or before `cut` (None when there are none):
    a pure function of them, to go on from with `build_ledger(..., since=...)`."""
    cut = aware_utc(cut)
    ordered = _in_order(facts, None, cut)
    if not ordered:
        return None
    fold = _fold(_Fold(customer_id, config, berlin_date(ordered[0].occurred_at).year), ordered)
    fold.show()  # once: every ledger folded on from here shows the same Lot objects
    return LedgerSnapshot(customer_id, cut, len(ordered), config, fold)


def build_ledger(
    customer_id: str,
    facts: Iterable[Fact],
    as_of: datetime,
    config: LoyaltyConfig,
    since: LedgerSnapshot | None = None,
) -> Ledger:
    """LOY-10/LOY-12/LOY-13: the customer's statement as of `as_of`, a pure fold.

    `facts` may hold duplicates, arrive in any order and include facts about other
    customers or policies (they are ignored); only facts that occurred at or before
    `as_of` count, and calendar moments up to `as_of` (inclusive) are applied.

    With `since` (a snapshot of this customer's facts up to `since.cut` <= `as_of`, under
    this config), only the facts after `since.cut` are folded, on top of it: the result
    is the same as folding the snapshot's facts and these together, provided no fact at
    or before the cut is missing from the snapshot (the caller checks that).
    """
    as_of = aware_utc(as_of)
    if since is None:
        ordered = _in_order(facts, None, as_of)
        if not ordered:
            return _Fold(customer_id, config, berlin_date(as_of).year).ledger(as_of)
        fold = _Fold(customer_id, config, berlin_date(ordered[0].occurred_at).year)
    else:
        if since.customer_id != customer_id or since.config != config or since.cut > as_of:
            raise ValueError("the snapshot is of another customer, config, or a later time")
        ordered = _in_order(facts, since.cut, as_of)
        fold = since.fold.copy()
    _fold(fold, ordered)
    fold.advance(as_of)
    return fold.ledger(as_of)
