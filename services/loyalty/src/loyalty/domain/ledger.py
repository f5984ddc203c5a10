"""The points ledger of one customer: a pure fold of facts and the business calendar.

`build_ledger(customer_id, facts, as_of, config)` is the single source of every balance
(LOY-12): it takes the SET of facts concerning the customer (duplicates by `event_id`
are dropped), orders them by business time (`occurred_at`, then a fixed kind priority,
then `event_id`), interleaves the Europe/Berlin calendar moments up to `as_of` (monthly
runs, January runs, year-end expiry) and folds. Delivery order and re-delivery change
nothing. Facts that do not concern the customer (other customers' facts, payments not
naming them, policies they never held) change nothing. Nothing here reads a clock or does
I/O; Berlin dates come from `servicekit.clock` (pure stdlib helpers).

Calendar moments (all at 00:00 Europe/Berlin)
- Monthly run on the 1st of each month: credits the premium payments of the previous
  Berlin month (LOY-2). Lot credit date = run date.
- 1 January of year Y, in this order: expiry of the lots credited in Y-4 (LOY-5), the
  monthly run of that day, the January run of Y (LOY-3).
- A calendar moment at instant t is applied before the facts that occurred at t. So a
  ledger "as of t" (what `decide_redemption` sees at t) contains exactly what precedes a
  fact at t in the fold, and the fold reproduces every decision taken at t.

Fact priority at one instant: registration, enrolment, policy issued, policyholders
changed, policy cancelled, premium paid, e-mail-instead-of-letter on, off, service used,
reward redeemed, account cancelled (last: whatever happened at that very instant still
counts, then the membership ends).

Interpretations (decided where the spec and the lead's design are silent)
1. Duplicates: facts are identified by `event_id`. Two different facts with the same
   event_id (a producer bug) are resolved deterministically: the one that sorts first by
   (occurred_at, kind priority, repr) wins. Independently, a premium payment counts once
   per `payment_id`, a redemption once per `redemption_id` (first in business order).
2. Enrolment happens once: the first Enrolled fact counts; Enrolled facts after an
   AccountCancelled (business time) are ignored - a cancelled account never rejoins.
   An AccountCancelled for a customer who never enrolled also ends the membership
   (status `ended` with no `enrolled_at`), so nothing can ever be credited.
3. LOY-2: a payment earns points when, in business time, the customer is enrolled at
   (or before, same instant counts) the payment and still a member at the run. The
   payment's own `point_relevant`, `product_line` and `policyholder_ids` are trusted (the
   contracts service applies the CT-5 table). Points = floor(full euros * rate); payments
   worth 0 points (amount < 1 EUR, rate 0, refunds/negative amounts) create nothing.
4. LOY-8 at the run: the policy's terms (each PolicyIssued opens one, a PolicyCancelled
   sets the end of the latest one; a second cancellation of the same term corrects its
   date) are looked up for the Berlin date of the payment: the governing term is the
   latest term started on or before that date (else the first term); the payment earns
   only if that term has no end or the date is on/before the end. So payments after a
   cancellation's effective date earn nothing until the policy is issued again; payments
   before the very first start date (first premium paid in advance) earn. Only
   cancellations known (by business time) at the run count: a retroactive cancellation
   recorded after the run never takes back credited points ("earned points stay").
   A payment of a policy without any known PolicyIssued earns normally.
5. LOY-3: holdings are per policy term; issuing a policy again (even without a
   cancellation in between) restarts the holding (the previous open term ends on the new
   start date). A holder added by PolicyholdersChanged holds from its effective date; a
   removed holder stops on that date. A holding counts in the run of year Y when it
   started on or before 1 January Y and did not end before 1 January Y; the longest one
   wins (earliest start, tie: smallest policy_id). full years = completed years from the
   start to 1 January Y; k = full years + 1; points = min(100 * k, 1000) - the 10th year
   already yields 1000, the 11th and later stay at 1000. Only facts known at the run (by
   business time) count, like LOY-8. Relevance comes from the PolicyIssued of the term;
   a holding of a policy never seen issued is not relevant.
6. LOY-4: only the customer's first EmailInsteadOfLetterActivated (business order) can
   earn the bonus, and only if it occurred strictly after the enrolment and before the
   membership ended. Deactivations never change points. Credited at the activation.
7. LOY-11: a ServiceUsed credits every campaign for its action that is active on the
   Berlin date of the use and not yet credited to the customer, provided the customer is
   an active member at that time (same instant as enrolment counts). Credited at once.
8. LOY-5: lots expire at 1 January (credit year + 4) 00:00 Berlin; one expiry history
   entry per year end lists the lots and points. Redemptions draw from lots ordered by
   (expires_on, credited_at, lot_id).
9. LOY-9: at AccountCancelled every remaining point is forfeited (one history entry,
   even with 0 points, when the customer was enrolled), pending premium credits are
   dropped and nothing is credited afterwards. A late-arriving fact whose business time
   precedes the cancellation is folded where it belongs: its credit appears in the
   history before the cancellation and is forfeited with the rest - the balance after
   the cancellation is 0 whatever arrives.
10. Over-drawn redemption: when a late fact (e.g. a cancellation recorded, in business
    time, before a monthly run) makes a recorded redemption exceed what the lots hold at
    its time, the redemption takes what there is; the rest is reported as
    `RedemptionReason.unbacked_points` (for operators) and is NOT carried as a debt. The
    balance never goes negative and the fold never raises. Recorded redemptions are
    applied even when the fold says the customer was not a member then (they take
    whatever lots exist, usually none).
11. Pending premium credits are shown while the customer is an active member and the
    payment is not already excluded by a known cancellation (LOY-8); they are what the
    next runs will credit unless a later fact says otherwise.
12. History entry ids are deterministic (`premium:<payment_id>`, `loyalty:<year>`,
    `eil-bonus`, `campaign:<campaign_id>` = the lot ids; `redemption:<redemption_id>`,
    `expiry:<yyyy-12-31>`, `forfeit`) so the service can derive idempotent event ids.
13. LOY-5 warnings: `expiry_warnings` looks only at the lots expiring at the end of the
    current Berlin year and warns from `expiry_warning_lead_days` (inclusive) before
    31 December; it returns a tuple (empty or one warning) with id
    `expiry-warning:<customer_id>:<yyyy-12-31>`.
14. Decisions (`decisions.py`) return the fact itself, with deterministic event ids
    (`enrolled:<customer_id>`, `reward-redeemed:<redemption_id>`). LOY-1 checks in this
    order: registered, account not cancelled, not yet enrolled, natural person, country
    "DE" (case-insensitive), 18 on the Berlin date of `now` (born 29 February: of age on
    1 March in common years, as under German law). LOY-6 refuses a redemption id already
    in the history; with co-payment allowed, a balance of 0 pays the whole shortfall.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
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

LOY_2 = "LOY-2"
LOY_3 = "LOY-3"
LOY_4 = "LOY-4"
LOY_5 = "LOY-5"
LOY_6 = "LOY-6"
LOY_9 = "LOY-9"
LOY_11 = "LOY-11"

EIL_BONUS_POINTS = 1000
LOYALTY_POINTS_PER_YEAR = 100
LOYALTY_POINTS_MAX = 1000
EIL_BONUS_LOT_ID = "eil-bonus"
FORFEIT_ENTRY_ID = "forfeit"


def premium_lot_id(payment_id: str) -> str:
    return f"premium:{payment_id}"


def loyalty_lot_id(year: int) -> str:
    return f"loyalty:{year}"


def campaign_lot_id(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def redemption_entry_id(redemption_id: str) -> str:
    return f"redemption:{redemption_id}"


def expiry_entry_id(expires_on: date) -> str:
    return f"expiry:{expires_on.isoformat()}"


def lot_expires_on(credited_on: date) -> date:
    """LOY-5: valid at least 36 months, until the end of the year in which they end."""
    return date(credited_on.year + 3, 12, 31)


def monthly_run_date(paid_on: date) -> date:
    """LOY-2: the run on the 1st of the month after the (Berlin) month of payment."""
    if paid_on.month == 12:
        return date(paid_on.year + 1, 1, 1)
    return date(paid_on.year, paid_on.month + 1, 1)


def full_years_between(start: date, day: date) -> int:
    """Completed years from `start` to `day` (0 when `day` precedes an anniversary)."""
    years = day.year - start.year
    if (day.month, day.day) < (start.month, start.day):
        years -= 1
    return max(years, 0)


def loyalty_points_for(full_years: int) -> int:
    """LOY-3: k = full years + 1, points = min(100 * k, 1000)."""
    return min(LOYALTY_POINTS_PER_YEAR * (full_years + 1), LOYALTY_POINTS_MAX)


# --- the statement ----------------------------------------------------------------------


class MembershipStatus(StrEnum):
    NOT_ENROLLED = "not_enrolled"
    ENROLLED = "enrolled"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Membership:
    """Not enrolled / enrolled since `enrolled_at` / ended at `ended_at` (LOY-9)."""

    status: MembershipStatus
    enrolled_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.status is MembershipStatus.ENROLLED


class EntryKind(StrEnum):
    CREDIT = "credit"
    REDEMPTION = "redemption"
    EXPIRY = "expiry"
    FORFEIT = "forfeit"


@dataclass(frozen=True, slots=True)
class PremiumReason:
    """LOY-2: floor(full_euros * rate) points for payment `payment_id`."""

    payment_id: str
    payment_event_id: str
    policy_id: str
    product_line: str
    paid_at: datetime
    amount_cents: int
    full_euros: int
    rate: Fraction


@dataclass(frozen=True, slots=True)
class LoyaltyReason:
    """LOY-3: policy `policy_id` held since `holding_since`; k = full_years + 1."""

    year: int
    policy_id: str
    holding_since: date
    full_years: int
    k: int


@dataclass(frozen=True, slots=True)
class EilBonusReason:
    """LOY-4: e-mail instead of letter activated after enrolment."""

    activation_event_id: str
    activated_at: datetime
    enrolled_at: datetime


@dataclass(frozen=True, slots=True)
class CampaignReason:
    """LOY-11: campaign `campaign_id` rewarded `action`."""

    campaign_id: str
    action: str
    service_event_id: str
    used_at: datetime


@dataclass(frozen=True, slots=True)
class LotDraw:
    """Points taken from one lot by a redemption, an expiry or a forfeit."""

    lot_id: str
    points: int


@dataclass(frozen=True, slots=True)
class RedemptionReason:
    """LOY-6: `points_requested` by the recorded redemption; `lots` says where the points
    came from; `unbacked_points` > 0 only when a late fact left the lots short (see the
    module docstring, interpretation 10)."""

    redemption_id: str
    reward_id: str
    points_requested: int
    co_payment_cents: int
    lots: tuple[LotDraw, ...]
    unbacked_points: int


@dataclass(frozen=True, slots=True)
class ExpiryReason:
    """LOY-5: the lots that expired at the end of `expires_on`."""

    expires_on: date
    lots: tuple[LotDraw, ...]


@dataclass(frozen=True, slots=True)
class ForfeitReason:
    """LOY-9: the account was cancelled; every remaining point is forfeited."""

    account_cancelled_event_id: str
    lots: tuple[LotDraw, ...]


CreditReason = PremiumReason | LoyaltyReason | EilBonusReason | CampaignReason
Reason = CreditReason | RedemptionReason | ExpiryReason | ForfeitReason


@dataclass(frozen=True, slots=True)
class Lot:
    """LOY-5: one credit, valid until the end of `expires_on`; `remaining` is what is left
    after redemptions, expiry or forfeit."""

    lot_id: str
    rule: str
    reason: CreditReason
    credited_at: datetime
    credited_on: date
    expires_on: date
    points: int
    remaining: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """LOY-10: one line of the statement; `points` is signed, `balance_after` the balance
    right after it."""

    entry_id: str
    at: datetime
    kind: EntryKind
    points: int
    rule: str
    reason: Reason
    balance_after: int


@dataclass(frozen=True, slots=True)
class PendingCredit:
    """LOY-2: a payment awaiting the monthly run on `run_on`."""

    lot_id: str
    run_on: date
    points: int
    reason: PremiumReason


@dataclass(frozen=True, slots=True)
class NextExpiry:
    expires_on: date
    points: int


@dataclass(frozen=True, slots=True)
class Ledger:
    """LOY-10/LOY-13: the statement of one customer as of `as_of`.

    `balance` == sum of `remaining` over `lots`, always >= 0. `lots` lists every lot ever
    credited (in credit order), `history` every movement (in business order).
    """

    customer_id: str
    as_of: datetime
    membership: Membership
    balance: int
    lots: tuple[Lot, ...]
    next_expiry: NextExpiry | None
    pending: tuple[PendingCredit, ...]
    history: tuple[HistoryEntry, ...]


@dataclass(frozen=True, slots=True)
class ExpiryWarning:
    """LOY-5: `points` expire at the end of `expires_on`; `warning_id` (customer + expiry
    date) lets the service send the warning once."""

    warning_id: str
    customer_id: str
    expires_on: date
    points: int


def expiry_warnings(
    ledger: Ledger, as_of: datetime, config: LoyaltyConfig
) -> tuple[ExpiryWarning, ...]:
    """LOY-5: the warning for the points expiring at the end of the current Berlin year,
    when `as_of` is at most `expiry_warning_lead_days` before that 31 December; empty
    otherwise. `ledger` must be built as of `as_of`."""
    today = berlin_date(_aware_utc(as_of))
    year_end = date(today.year, 12, 31)
    if (year_end - today).days > config.expiry_warning_lead_days:
        return ()
    points = sum(lot.remaining for lot in ledger.lots if lot.expires_on == year_end)
    if points <= 0:
        return ()
    warning_id = f"expiry-warning:{ledger.customer_id}:{year_end.isoformat()}"
    return (ExpiryWarning(warning_id, ledger.customer_id, year_end, points),)


# --- the fold ---------------------------------------------------------------------------

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


def _aware_utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    return at.astimezone(UTC)


@dataclass(slots=True)
class _Lot:
    lot_id: str
    rule: str
    reason: CreditReason
    credited_at: datetime
    credited_on: date
    expires_on: date
    points: int
    remaining: int

    def draw_key(self) -> tuple[date, datetime, str]:
        return (self.expires_on, self.credited_at, self.lot_id)

    def freeze(self) -> Lot:
        return Lot(
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
        draws = self._take_all(alive[:count])
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
                LOY_5,
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
            self.credit(item.lot_id, LOY_2, item.reason, item.points, at, run_on)

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
        self.credit(loyalty_lot_id(year), LOY_3, reason, loyalty_points_for(full_years), at, day)

    # lots --------------------------------------------------------------------------

    def credit(
        self,
        lot_id: str,
        rule: str,
        reason: CreditReason,
        points: int,
        at: datetime,
        on: date,
    ) -> None:
        lot = _Lot(lot_id, rule, reason, at, on, lot_expires_on(on), points, points)
        self.lots.append(lot)
        bisect.insort(self.alive, lot, key=_Lot.draw_key)
        self.balance += points
        self.history.append(
            HistoryEntry(lot_id, at, EntryKind.CREDIT, points, rule, reason, self.balance)
        )

    @staticmethod
    def _take_all(lots: list[_Lot]) -> tuple[LotDraw, ...]:
        draws = tuple(LotDraw(lot.lot_id, lot.remaining) for lot in lots)
        for lot in lots:
            lot.remaining = 0
        return draws

    def draw(self, points: int) -> tuple[LotDraw, ...]:
        """LOY-5/LOY-6: take up to `points` from the lots expiring first."""
        alive = self.alive
        draws: list[LotDraw] = []
        left = points
        used_up = 0
        while left > 0 and used_up < len(alive):
            lot = alive[used_up]
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
        self.credit(EIL_BONUS_LOT_ID, LOY_4, reason, EIL_BONUS_POINTS, fact.occurred_at, on)

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
                LOY_11,
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
                LOY_6,
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
        draws = self._take_all(self.alive)
        self.alive.clear()
        forfeited = self.balance
        self.balance = 0
        self.history.append(
            HistoryEntry(
                FORFEIT_ENTRY_ID,
                fact.occurred_at,
                EntryKind.FORFEIT,
                -forfeited,
                LOY_9,
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
            points = sum(lot.remaining for lot in self.alive if lot.expires_on == first)
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
            lots=tuple(lot.freeze() for lot in self.lots),
            next_expiry=next_expiry,
            pending=pending,
            history=tuple(self.history),
        )

    def _still_earns(self, item: _Pending) -> bool:
        policy = self.policies.get(item.reason.policy_id)
        return policy is None or policy.pays_points_on(item.paid_on)


def _canonical(fact: Fact) -> tuple[datetime, int, str]:
    return (fact.occurred_at, _PRIORITY[type(fact)], repr(fact))


def build_ledger(
    customer_id: str, facts: Iterable[Fact], as_of: datetime, config: LoyaltyConfig
) -> Ledger:
    """LOY-10/LOY-12/LOY-13: the customer's statement as of `as_of`, a pure fold.

    `facts` may hold duplicates, arrive in any order and include facts about other
    customers or policies (they are ignored); only facts that occurred at or before
    `as_of` count, and calendar moments up to `as_of` (inclusive) are applied.
    """
    as_of = _aware_utc(as_of)
    unique: dict[str, Fact] = {}
    for fact in facts:
        known = unique.get(fact.event_id)
        if known is None or (known != fact and _canonical(fact) < _canonical(known)):
            unique[fact.event_id] = fact
    ordered = sorted((f for f in unique.values() if f.occurred_at <= as_of), key=_order_key)
    if not ordered:
        return _Fold(customer_id, config, berlin_date(as_of).year).ledger(as_of)
    fold = _Fold(customer_id, config, berlin_date(ordered[0].occurred_at).year)
    for fact in ordered:
        fold.advance(fact.occurred_at)
        fold.apply(fact)
    fold.advance(as_of)
    return fold.ledger(as_of)
