"""Factories for the contracts domain's unit tests: upstream messages and a tiny harness
that does what the handler does (derive event ids from the message, decide, fold)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest
from contracts.domain.catalogue import Catalogue
from contracts.domain.policy import (
    DecisionContext,
    PolicyState,
    cancel_policy,
    change_policyholders,
    evolve,
    issue_policy,
    record_premium_payment,
    upstream_event_ids,
)
from contracts_schemas.common import Carrier, ProductLine
from contracts_schemas.contracts import PolicyEvent
from contracts_schemas.upstream import (
    PolicyCancelledUpstream,
    PolicyholdersChangedUpstream,
    PolicyIssuedUpstream,
    PremiumPaidUpstream,
)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

UpstreamInput = (
    PolicyIssuedUpstream
    | PremiumPaidUpstream
    | PolicyCancelledUpstream
    | PolicyholdersChangedUpstream
)


@dataclass
class Upstream:
    """Builds upstream messages (a fresh message id unless given) and runs them through
    the decisions the way the handler does (event ids derived from the message)."""

    source_system: str = "policy-admin"
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    t0: datetime = T0

    @staticmethod
    def ctx(message: UpstreamInput, now: datetime = T0) -> DecisionContext:
        return DecisionContext(new_event_id=upstream_event_ids(message), now=now)

    def decide(
        self,
        state: PolicyState | None,
        message: UpstreamInput,
        catalogue: Catalogue | None = None,
    ) -> list[PolicyEvent]:
        """What the upstream handler does: ids from the message, then the decision."""
        catalogue = catalogue or Catalogue.default()
        ctx = self.ctx(message)
        match message:
            case PolicyIssuedUpstream():
                return issue_policy(state, message, catalogue, ctx)
            case PremiumPaidUpstream():
                return record_premium_payment(state, message, catalogue, ctx)
            case PolicyCancelledUpstream():
                return cancel_policy(state, message, ctx)
            case PolicyholdersChangedUpstream():
                return change_policyholders(state, message, ctx)

    @staticmethod
    def apply(state: PolicyState | None, events: list[PolicyEvent]) -> PolicyState | None:
        for event in events:
            state = evolve(state, event)
        return state

    def run(
        self,
        state: PolicyState | None,
        *messages: UpstreamInput,
        catalogue: Catalogue | None = None,
    ) -> PolicyState:
        """Decide and apply each message in turn; the resulting state."""
        for message in messages:
            state = self.apply(state, self.decide(state, message, catalogue))
        assert state is not None
        return state

    def _id(self, message_id: str | None) -> str:
        return message_id or f"msg-{next(self._counter)}-{uuid4().hex[:8]}"

    def issued(
        self,
        policy_number: str = "AS-1000",
        *,
        product_line: ProductLine = ProductLine.LIABILITY,
        carrier: Carrier | None = None,
        holders: tuple[str, ...] = ("cust-anna",),
        insured: tuple[str, ...] = (),
        visible_to_insured: bool = False,
        start_date: date = date(2026, 1, 1),
        at: datetime = T0,
        message_id: str | None = None,
        tariff: str = "Privathaftpflicht Komfort",
        annual_premium_cents: int = 12_000,
    ) -> PolicyIssuedUpstream:
        return PolicyIssuedUpstream(
            message_id=self._id(message_id),
            source_system=self.source_system,
            occurred_at=at,
            policy_number=policy_number,
            product_line=product_line,
            carrier=carrier or Catalogue.default().allowed_carriers(product_line)[0],
            policyholder_ids=holders,
            insured_person_ids=insured,
            visible_to_insured=visible_to_insured,
            start_date=start_date,
            tariff=tariff,
            annual_premium_cents=annual_premium_cents,
        )

    def paid(
        self,
        policy_number: str = "AS-1000",
        *,
        payment_id: str = "pay-1",
        amount_cents: int = 1_000,
        at: datetime = T0 + timedelta(days=30),
        message_id: str | None = None,
    ) -> PremiumPaidUpstream:
        return PremiumPaidUpstream(
            message_id=self._id(message_id),
            source_system="collections",
            occurred_at=at,
            policy_number=policy_number,
            payment_id=payment_id,
            amount_cents=amount_cents,
        )

    def cancelled(
        self,
        policy_number: str = "AS-1000",
        *,
        effective_date: date = date(2026, 12, 31),
        at: datetime = T0 + timedelta(days=60),
        message_id: str | None = None,
    ) -> PolicyCancelledUpstream:
        return PolicyCancelledUpstream(
            message_id=self._id(message_id),
            source_system=self.source_system,
            occurred_at=at,
            policy_number=policy_number,
            effective_date=effective_date,
        )

    def holders_changed(
        self,
        policy_number: str = "AS-1000",
        *,
        holders: tuple[str, ...],
        effective_date: date = date(2026, 6, 1),
        at: datetime = T0 + timedelta(days=45),
        message_id: str | None = None,
    ) -> PolicyholdersChangedUpstream:
        return PolicyholdersChangedUpstream(
            message_id=self._id(message_id),
            source_system=self.source_system,
            occurred_at=at,
            policy_number=policy_number,
            policyholder_ids=holders,
            effective_date=effective_date,
        )


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue.default()
