"""A small scenario builder for the loyalty domain tests: it records facts with unique
event ids and Berlin-local business times, and builds ledgers from them."""

from __future__ import annotations

from datetime import date, datetime
from fractions import Fraction

import pytest
from loyalty.domain.config import Campaign, LoyaltyConfig, Reward
from loyalty.domain.decisions import RedemptionRefused, decide_enrolment, decide_redemption
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
from loyalty.domain.ledger import Ledger, build_ledger
from servicekit.clock import BERLIN

DEFAULT_CONFIG = LoyaltyConfig(
    premium_rates={"motor": Fraction(1, 2), "life": Fraction(2)},
    campaigns=(
        Campaign("app-2025", "app_login", 250, date(2025, 1, 1), date(2025, 12, 31)),
        Campaign(
            "claim-online-2025", "claim_reported_online", 500, date(2025, 3, 1), date(2025, 3, 31)
        ),
    ),
    rewards={
        "cinema": Reward("cinema", "Kinogutschein", 1500, True, 2),
        "arena": Reward("arena", "Tickets Allianz Arena", 5000, False, 0),
    },
)


class Scenario:
    def __init__(self, config: LoyaltyConfig) -> None:
        self.config = config
        self.facts: list[Fact] = []
        self._n = 0

    @staticmethod
    def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0, ss: int = 0) -> datetime:
        """A Berlin wall-clock time."""
        return datetime(y, m, d, hh, mm, ss, tzinfo=BERLIN)

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    def add(self, fact: Fact) -> Fact:
        self.facts.append(fact)
        return fact

    def register(
        self,
        customer: str,
        at: datetime,
        birth_date: date = date(1980, 5, 17),
        country: str = "DE",
        natural_person: bool = True,
    ) -> CustomerRegistered:
        fact = CustomerRegistered(
            self._id("reg"), at, customer, birth_date, country, natural_person
        )
        self.add(fact)
        return fact

    def enrol(self, customer: str, at: datetime) -> Enrolled:
        """Registers (if needed) and enrols through decide_enrolment (LOY-1)."""
        registration = next(
            (
                f
                for f in self.facts
                if isinstance(f, CustomerRegistered) and f.customer_id == customer
            ),
            None,
        )
        if registration is None:
            registration = self.register(customer, at)
        decision = decide_enrolment(registration, False, False, at)
        assert isinstance(decision, Enrolled), decision
        self.add(decision)
        return decision

    def issue(
        self,
        policy: str,
        holders: tuple[str, ...],
        start: date,
        at: datetime | None = None,
        relevant: bool = True,
        line: str = "household",
    ) -> PolicyIssued:
        when = at or datetime(start.year, start.month, start.day, 9, tzinfo=BERLIN)
        fact = PolicyIssued(self._id("iss"), when, policy, line, relevant, holders, start)
        self.add(fact)
        return fact

    def change_holders(
        self, policy: str, holders: tuple[str, ...], effective: date, at: datetime
    ) -> None:
        self.add(PolicyholdersChanged(self._id("chg"), at, policy, holders, effective))

    def cancel_policy(self, policy: str, effective: date, at: datetime) -> None:
        self.add(PolicyCancelled(self._id("can"), at, policy, effective))

    def pay(
        self,
        policy: str,
        cents: int,
        at: datetime,
        holders: tuple[str, ...],
        relevant: bool = True,
        line: str = "household",
        payment_id: str | None = None,
    ) -> PremiumPaid:
        fact = PremiumPaid(
            self._id("pay"), at, payment_id or self._id("p"), policy, line, relevant, cents, holders
        )
        self.add(fact)
        return fact

    def activate_eil(self, customer: str, at: datetime) -> None:
        self.add(EmailInsteadOfLetterActivated(self._id("eil-on"), at, customer))

    def deactivate_eil(self, customer: str, at: datetime) -> None:
        self.add(EmailInsteadOfLetterDeactivated(self._id("eil-off"), at, customer))

    def cancel_account(self, customer: str, at: datetime) -> None:
        self.add(AccountCancelled(self._id("acc"), at, customer))

    def use_service(self, customer: str, action: str, at: datetime) -> None:
        self.add(ServiceUsed(self._id("use"), at, customer, action))

    def redeem(
        self, customer: str, reward_id: str, at: datetime
    ) -> RewardRedeemed | RedemptionRefused:
        """Decides on the ledger as of `at` (LOY-6) and records what was accepted."""
        decision = decide_redemption(
            self.ledger(customer, at), self.config.rewards[reward_id], self._id("r"), at
        )
        if isinstance(decision, RewardRedeemed):
            self.add(decision)
        return decision

    def ledger(self, customer: str, as_of: datetime) -> Ledger:
        return build_ledger(customer, self.facts, as_of, self.config)


@pytest.fixture
def scenario() -> Scenario:
    return Scenario(DEFAULT_CONFIG)
