"""Use cases of the contracts service: upstream messages in, customer commands and queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts_schemas import identity, upstream
from contracts_schemas.base import UpstreamMessage
from contracts_schemas.contracts import PolicyEvent
from servicekit.consumer import Delivery, Rejected
from servicekit.db import Connection

from contracts.adapters.mtan import MtanPort
from contracts.adapters.policies import PolicyRepository, is_activated, mark_activated
from contracts.domain import policy as p
from contracts.domain.catalogue import Catalogue
from contracts.domain.errors import ReasonCode, UpstreamRejected
from contracts.domain.iban import parse_iban
from contracts.domain.mtan import bank_details_mtan_reference
from contracts.domain.views import ContractDetails, ContractSummary, contract_summaries
from contracts.domain.views import contract_details as details_view
from contracts.domain.visibility import NotVisibleReason, why_not_visible


@dataclass(frozen=True)
class Contracts:
    policies: PolicyRepository
    catalogue: Catalogue
    mtan: MtanPort

    async def ingest(self, conn: Connection, message: UpstreamMessage) -> list[PolicyEvent]:
        """CT-1: record one upstream message; [] when it was recorded before.

        Raises UpstreamRejected with the reason, ConcurrencyConflict when the policy moved.
        """
        policy_id = p.policy_id_for(message.policy_number)
        state = await self.policies.load(conn, policy_id)
        ctx = p.DecisionContext(p.upstream_event_ids(message), message.occurred_at)
        events = self._decide(state, message, ctx)
        await self.policies.save(conn, state, events)
        return events

    def _decide(
        self, state: p.PolicyState | None, message: UpstreamMessage, ctx: p.DecisionContext
    ) -> list[PolicyEvent]:
        match message:
            case upstream.PolicyIssuedUpstream():
                return p.issue_policy(state, message, self.catalogue, ctx)
            case upstream.PremiumPaidUpstream():
                return p.record_premium_payment(state, message, self.catalogue, ctx)
            case upstream.PolicyCancelledUpstream():
                return p.cancel_policy(state, message, ctx)
            case upstream.PolicyholdersChangedUpstream():
                return p.change_policyholders(state, message, ctx)
        raise UpstreamRejected(ReasonCode.POLICY_NOT_FOUND, f"unsupported {message.type_name()}")

    async def ingest_batch(self, conn: Connection, deliveries: Sequence[Delivery]) -> None:
        """Consumer handler of the ingestion topic; refused messages go to dead letters."""
        for delivery in deliveries:
            if not isinstance(delivery.message, UpstreamMessage):
                raise Rejected(f"{delivery.cloud_event.type} is not an upstream message")
            try:
                await self.ingest(conn, delivery.message)
            except UpstreamRejected as rejected:
                raise Rejected(f"{rejected.code.value}: {rejected.detail}") from rejected

    async def record_identity(self, conn: Connection, deliveries: Sequence[Delivery]) -> None:
        """ID-3: remember who activated their account."""
        activated = [
            (d.message.customer_id, d.message.occurred_at)
            for d in deliveries
            if isinstance(d.message, identity.AccountActivated)
        ]
        await mark_activated(conn, activated)

    async def is_activated(self, conn: Connection, customer_id: str) -> bool:
        return await is_activated(conn, customer_id)

    async def my_contracts(self, conn: Connection, customer_id: str) -> list[ContractSummary]:
        """CT-3: the contracts this customer may see."""
        activated = await is_activated(conn, customer_id)
        states = await self.policies.of_customer(conn, customer_id)
        return contract_summaries(states, customer_id, activated, self.catalogue)

    async def contract(self, conn: Connection, customer_id: str, policy_id: str) -> ContractDetails:
        """CT-4: details; raises ContractNotVisible (same answer for strangers as unknown)."""
        state = await self.policies.load(conn, policy_id)
        activated = await is_activated(conn, customer_id)
        return details_view(state, customer_id, activated, self.catalogue)

    async def why_not_visible(
        self, conn: Connection, customer_id: str, policy_number: str
    ) -> NotVisibleReason | None:
        """CT-3: "why don't I see contract X?"."""
        state = await self.policies.load(conn, p.policy_id_for(policy_number))
        return why_not_visible(customer_id, await is_activated(conn, customer_id), state)

    async def change_bank_details(
        self, conn: Connection, customer_id: str, policy_id: str, iban: str, mtan_id: str,
        now: datetime,
    ) -> list[PolicyEvent]:  # fmt: skip
        """CT-4/ID-6: new IBAN, confirmed by an mTAN bound to this policy and IBAN."""
        state = await self.policies.load(conn, policy_id)
        reference = bank_details_mtan_reference(policy_id, parse_iban(iban))
        command = p.ChangeBankDetails(
            customer_id, await is_activated(conn, customer_id), policy_id, iban
        )
        confirmation = await self.mtan.confirmation(customer_id, mtan_id, reference)
        ctx = p.DecisionContext(p.deterministic_event_ids(f"bank:{mtan_id}"), now)
        events = p.change_bank_details(state, command, confirmation, ctx)
        await self.policies.save(conn, state, events)
        return events

    async def report_move(
        self, conn: Connection, command: p.ReportMove, request_id: str, now: datetime
    ) -> list[PolicyEvent]:
        """CT-4: a move; the same request retried has one effect."""
        state = await self.policies.load(conn, command.policy_id)
        ctx = p.DecisionContext(p.deterministic_event_ids(f"move:{request_id}"), now)
        events = p.report_move(state, command, ctx)
        await self.policies.save(conn, state, events)
        return events
