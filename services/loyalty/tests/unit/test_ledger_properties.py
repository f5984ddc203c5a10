"""LOY-12: the ledger is a pure fold - delivery order, duplicates and other customers'
facts change nothing - and it always balances (LOY-5, LOY-10)."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from fractions import Fraction
from itertools import accumulate
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loyalty.domain.config import Campaign, LoyaltyConfig, Reward
from loyalty.domain.decisions import decide_enrolment, decide_redemption
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
from loyalty.domain.ledger import (
    EntryKind,
    Ledger,
    MembershipStatus,
    RedemptionReason,
    build_ledger,
    snapshot_ledger,
)
from loyalty.entrypoints.views import statement
from servicekit.clock import BERLIN

START = date(2019, 1, 1)
SPAN_DAYS = 365 * 8
CUSTOMERS = ("c1", "c2", "c3")
POLICIES = ("P1", "P2", "P3")
LINES = ("household", "motor", "life")
ACTIONS = ("app_login", "claim_reported_online", "tax_certificate", "unrewarded")
# Berlin wall-clock slots, chosen to hit the midnight edges of months and years.
SLOTS = ((0, 0), (0, 30), (12, 0), (23, 59))
KINDS = (
    ("enrol",) * 4
    + ("issue",) * 3
    + ("pay",) * 10
    + ("change_holders", "cancel_policy", "eil_off", "close_account")
    + ("eil_on",) * 2
    + ("service",) * 2
    + ("redeem",) * 3
)

CONFIG = LoyaltyConfig(
    premium_rates={"motor": Fraction(1, 2), "life": Fraction(3, 2)},
    campaigns=(
        Campaign("app-2020", "app_login", 250, date(2020, 1, 1), date(2020, 12, 31)),
        Campaign("app-2023", "app_login", 300, date(2023, 1, 1), date(2023, 6, 30)),
        Campaign("claims-2021", "claim_reported_online", 500, date(2021, 3, 1), date(2022, 2, 28)),
        Campaign("tax-2019", "tax_certificate", 50, date(2019, 1, 1), date(2026, 12, 31)),
    ),
    rewards={
        "mug": Reward("mug", "Tasse", 300, True, 3),
        "cinema": Reward("cinema", "Kinogutschein", 1500, True, 2),
        "arena": Reward("arena", "Tickets Allianz Arena", 2500, False, 0),
    },
)


def berlin(day_offset: int, slot: tuple[int, int]) -> datetime:
    day = START + timedelta(days=day_offset)
    return datetime(day.year, day.month, day.day, *slot, tzinfo=BERLIN)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Fact], tuple[str, ...], list[datetime]]:
    """A plausible history in business order: every recorded decision (enrolment,
    redemption) was taken on the ledger as it stood at that moment."""
    customers = CUSTOMERS[: draw(st.integers(1, 3))]
    n = draw(st.integers(5, 50))
    moment = st.tuples(st.integers(0, SPAN_DAYS), st.sampled_from(SLOTS))
    distinct = draw(st.lists(moment, min_size=n, max_size=n))
    # repeat some instants: facts of one instant must be ordered by kind and event id
    moments = sorted(distinct + draw(st.lists(st.sampled_from(distinct), max_size=n // 3)))
    facts: list[Fact] = []
    registrations: dict[str, CustomerRegistered] = {}
    enrolled: set[str] = set()
    closed: set[str] = set()
    holders: dict[str, tuple[str, ...]] = {}
    relevant: dict[str, bool] = {}
    payment_ids: list[str] = []
    some_customers = st.lists(st.sampled_from(customers), min_size=1, unique=True).map(tuple)

    for i, (offset, slot) in enumerate(moments):
        t = berlin(offset, slot)
        today = t.date()
        kind = draw(st.sampled_from(KINDS))
        c = draw(st.sampled_from(customers))
        p = draw(st.sampled_from(POLICIES))
        eid = f"e{i}-{kind}"
        if kind == "enrol":
            if c not in registrations:
                registrations[c] = CustomerRegistered(
                    f"{eid}-reg",
                    t,
                    c,
                    draw(st.sampled_from([date(1960, 2, 29), date(1990, 7, 1), date(2003, 6, 1)])),
                    draw(st.sampled_from(["DE"] * 9 + ["FR"])),
                    draw(st.sampled_from([True] * 9 + [False])),
                )
                facts.append(registrations[c])
            decision = decide_enrolment(registrations[c], c in enrolled, c in closed, t)
            if isinstance(decision, Enrolled):
                enrolled.add(c)
                facts.append(decision)
        elif kind == "issue":
            holders[p] = draw(some_customers)
            relevant[p] = draw(st.booleans())
            start = today + timedelta(days=draw(st.integers(-800, 30)))
            line = draw(st.sampled_from(LINES))
            facts.append(PolicyIssued(eid, t, p, line, relevant[p], holders[p], start))
        elif kind == "change_holders" and p in holders:
            holders[p] = draw(some_customers)
            effective = today + timedelta(days=draw(st.integers(-30, 30)))
            facts.append(PolicyholdersChanged(eid, t, p, holders[p], effective))
        elif kind == "cancel_policy":
            effective = today + timedelta(days=draw(st.integers(-60, 60)))
            facts.append(PolicyCancelled(eid, t, p, effective))
        elif kind == "pay":
            reuse = payment_ids and draw(st.integers(0, 9)) == 0
            payment_id = draw(st.sampled_from(payment_ids)) if reuse else f"pay-{i}"
            payment_ids.append(payment_id)
            facts.append(
                PremiumPaid(
                    eid,
                    t,
                    payment_id,
                    p,
                    draw(st.sampled_from(LINES)),
                    relevant.get(p, draw(st.booleans())),
                    draw(st.integers(-1_000, 300_000)),
                    holders.get(p) or draw(some_customers),
                )
            )
        elif kind == "eil_on":
            facts.append(EmailInsteadOfLetterActivated(eid, t, c))
        elif kind == "eil_off":
            facts.append(EmailInsteadOfLetterDeactivated(eid, t, c))
        elif kind == "service":
            facts.append(ServiceUsed(eid, t, c, draw(st.sampled_from(ACTIONS))))
        elif kind == "redeem":
            reward = CONFIG.rewards[draw(st.sampled_from(sorted(CONFIG.rewards)))]
            ledger = build_ledger(c, facts, t, CONFIG)
            redeemed = decide_redemption(ledger, reward, f"r{i}", t)
            if isinstance(redeemed, RewardRedeemed):
                facts.append(redeemed)
        elif kind == "close_account" and c not in closed and draw(st.booleans()):
            closed.add(c)
            facts.append(AccountCancelled(eid, t, c))

    as_ofs = [
        berlin(draw(st.integers(0, SPAN_DAYS + 800)), draw(st.sampled_from(SLOTS)))
        for _ in range(3)
    ]
    as_ofs.append(datetime(draw(st.integers(2020, 2028)), 1, 1, tzinfo=BERLIN))
    return facts, customers, as_ofs


def concerning(customer: str, facts: list[Fact]) -> list[Fact]:
    """What the service would hand to build_ledger for `customer`."""
    held = {
        f.policy_id
        for f in facts
        if isinstance(f, PolicyIssued | PolicyholdersChanged | PremiumPaid)
        and customer in f.policyholder_ids
    }
    kept: list[Fact] = []
    for f in facts:
        if isinstance(f, PremiumPaid):
            keep = customer in f.policyholder_ids
        elif isinstance(f, PolicyIssued | PolicyholdersChanged | PolicyCancelled):
            keep = f.policy_id in held
        else:
            keep = f.customer_id == customer
        if keep:
            kept.append(f)
    return kept


def assert_balances(ledger: Ledger) -> None:
    """LOY-5/LOY-10: balance == sum of lot remainders >= 0; history adds up."""
    assert ledger.balance == sum(lot.remaining for lot in ledger.lots) >= 0
    assert all(0 <= lot.remaining <= lot.points for lot in ledger.lots)
    assert len({lot.lot_id for lot in ledger.lots}) == len(ledger.lots)
    assert list(accumulate(e.points for e in ledger.history)) == [
        e.balance_after for e in ledger.history
    ]
    assert all(e.balance_after >= 0 for e in ledger.history)
    for entry in ledger.history:
        if entry.kind is EntryKind.REDEMPTION:
            assert isinstance(entry.reason, RedemptionReason)
            # every recorded redemption was decided on the ledger of its moment
            assert entry.reason.unbacked_points == 0
    if ledger.membership.status is MembershipStatus.ENDED:
        assert ledger.balance == 0
        assert ledger.pending == ()
    assert all(p.run_on > ledger.as_of.astimezone(BERLIN).date() for p in ledger.pending)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_loy12_ledger_is_the_same_whatever_the_delivery_order_and_duplicates(data):
    facts, customers, as_ofs = data.draw(histories())
    duplicates = data.draw(st.lists(st.sampled_from(facts), max_size=12)) if facts else []
    delivered = data.draw(st.permutations(facts + duplicates))

    for customer in customers:
        own = sorted(concerning(customer, facts), key=lambda f: (f.occurred_at, f.event_id))
        for as_of in as_ofs:
            expected = build_ledger(customer, own, as_of, CONFIG)
            assert build_ledger(customer, delivered, as_of, CONFIG) == expected
            assert_balances(expected)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_loy12_a_ledger_folded_on_from_a_snapshot_is_the_ledger_of_all_the_facts(data):
    """LOY-12/13: a snapshot is a cache of the pure fold - going on from it with the later
    facts gives exactly the full fold's ledger, at every cut and as-of, and using it
    leaves it as it was (it can serve again)."""
    facts, customers, as_ofs = data.draw(histories())
    for customer in customers:
        own = concerning(customer, facts)
        cuts = [f.occurred_at for f in own] + [datetime(2021, 1, 1, tzinfo=BERLIN)]
        cut = data.draw(st.sampled_from(cuts))
        before = [f for f in own if f.occurred_at <= cut]
        snapshot = snapshot_ledger(customer, before, cut, CONFIG)
        assert (snapshot is None) == (not before)
        for as_of in (a for a in as_ofs if a >= cut):
            expected = build_ledger(customer, own, as_of, CONFIG)
            later = [f for f in own if f.occurred_at > cut]
            assert build_ledger(customer, later, as_of, CONFIG, since=snapshot) == expected
            # again from the same snapshot, handed every fact this time: the same
            assert build_ledger(customer, own, as_of, CONFIG, since=snapshot) == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_loy10_the_statement_body_shows_every_field_of_the_ledger(data):
    """LOY-10: the API's JSON body is the ledger field by field (reasons with their kind,
    only lots with points left, history newest first), as a plain reflective walk of the
    dataclasses renders it."""
    facts, customers, as_ofs = data.draw(histories())
    for customer in customers:
        ledger = build_ledger(customer, concerning(customer, facts), as_ofs[-1], CONFIG)
        assert statement(ledger) == _reference_body(ledger)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_loy10_each_of_a_customers_statements_shows_its_own_ledger(data):
    """LOY-10/13: the encoder keeps the text of a customer's last lots and history (a
    cache); every later statement - folded on from one snapshot, as of later times, so
    with more history and lots drawn or expired - is still exactly its own ledger's body."""
    facts, customers, as_ofs = data.draw(histories())
    for customer in customers:
        own = concerning(customer, facts)
        cuts = [f.occurred_at for f in own] + [datetime(2021, 1, 1, tzinfo=BERLIN)]
        cut = data.draw(st.sampled_from(cuts))
        snapshot = snapshot_ledger(customer, [f for f in own if f.occurred_at <= cut], cut, CONFIG)
        for as_of in sorted(a for a in as_ofs if a >= cut):
            later = [f for f in own if f.occurred_at > cut]
            ledger = build_ledger(customer, later, as_of, CONFIG, since=snapshot)
            assert statement(ledger) == _reference_body(ledger)
            assert statement(ledger) == _reference_body(ledger)  # the kept text, again


def _reference_body(ledger: Ledger) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if type(value).__name__.endswith("Reason"):
                fields = {"kind": type(value).__name__.removesuffix("Reason").lower(), **fields}
            return fields
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, Fraction):
            return str(value)
        if isinstance(value, datetime | date):
            return value.isoformat()
        return value

    body: dict[str, Any] = plain(ledger)
    body["lots"] = [lot for lot in body["lots"] if lot["remaining"] > 0]
    body["history"] = list(reversed(body["history"]))
    return body
