"""Use cases of the contracts service: upstream messages in, customer commands and queries.

Each handler takes its input and a `ContractsUnitOfWork` that is already inside its
transaction; it never opens one, holds a connection or writes SQL. Refusals are domain
errors (`UpstreamRejected`, `CommandRejected`), mapped to HTTP problems or dead letters
by the entrypoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import assert_never, get_args
from uuid import UUID

from contracts_schemas import identity
from contracts_schemas.common import PostalAddress
from contracts_schemas.contracts import PolicyEvent
from contracts_schemas.upstream import (
    PolicyCancelledUpstream,
    PolicyholdersChangedUpstream,
    PolicyIssuedUpstream,
    PremiumPaidUpstream,
)
from servicekit.clock import Clock
from servicekit.unit_of_work import Conflict, DuplicateEvent

from contracts.adapters.mtan import MtanPort
from contracts.domain import idempotency as idem
from contracts.domain import policy as p
from contracts.domain.catalogue import Catalogue
from contracts.domain.errors import DomainError
from contracts.domain.iban import parse_iban
from contracts.domain.mtan import (
    BANK_DETAILS_MTAN_PURPOSE,
    MtanChallenge,
    bank_details_mtan_reference,
)
from contracts.domain.views import ContractDetails, ContractSummary, contract_summaries
from contracts.domain.views import contract_details as details_view
from contracts.domain.visibility import NotVisibleReason, why_not_visible
from contracts.unit_of_work import ContractsUnitOfWork

UpstreamInput = (
    PolicyIssuedUpstream
    | PremiumPaidUpstream
    | PolicyCancelledUpstream
    | PolicyholdersChangedUpstream
)
UPSTREAM_TYPES: tuple[type[UpstreamInput], ...] = get_args(UpstreamInput)


@dataclass(frozen=True)
class Recorded:
    """What a command recorded; `replayed` when the same request had been handled before
    (then `event_ids` are those the first one recorded)."""

    event_ids: tuple[UUID, ...]
    replayed: bool

    @property
    def duplicate(self) -> bool:
        """Nothing new was recorded (a replay, or an input without a second effect)."""
        return self.replayed or not self.event_ids


@dataclass(frozen=True)
class ReportMove:
    """CT-4: the customer reports a move; `idempotency_key` is the client's key."""

    customer_id: str
    policy_id: str
    new_address: PostalAddress
    moved_on: date
    idempotency_key: str


@dataclass(frozen=True)
class ChangeBankDetails:
    """CT-4/ID-6: a new IBAN, confirmed with the mTAN `mtan_id`."""

    customer_id: str
    policy_id: str
    iban: str = field(repr=False)
    mtan_id: str


@dataclass(frozen=True)
class RequestBankDetailsMtan:
    """CT-4/ID-6: have identity send the mTAN that confirms this IBAN on this policy."""

    customer_id: str
    policy_id: str
    iban: str = field(repr=False)


@dataclass(frozen=True)
class ContractOf:
    customer_id: str
    policy_id: str


@dataclass(frozen=True)
class WhyNotVisible:
    customer_id: str
    policy_number: str


async def _save(
    uow: ContractsUnitOfWork,
    state: p.PolicyState | None,
    events: Sequence[PolicyEvent],
    key: idem.RequestKey,
    fingerprint: str,
    reused: DomainError,
) -> Recorded:
    """Append the events and record the request key in the same transaction.

    An event id derived from this key that is stored already was recorded either by a
    concurrent transaction that committed meanwhile (its record decides: replay or
    reused) or, without a record, before records existed: refused like a reused key. A
    concurrent transaction still in flight surfaces as DuplicateEvent: decide again.
    """
    ids = tuple(e.event_id for e in events)
    if ids and await uow.policies.stored(ids):
        # Stored since this transaction looked for the key's record: judge that record.
        if (replay := await _replay(uow, key, fingerprint, reused)) is not None:
            return replay
        raise reused
    try:
        await uow.policies.save(state, events)
    except DuplicateEvent as exc:
        raise Conflict(f"event ids of {key.scope} {key.key!r} stored concurrently") from exc
    await uow.requests.record(key, idem.RecordedRequest(fingerprint, ids))
    return Recorded(ids, replayed=False)


async def _replay(
    uow: ContractsUnitOfWork, key: idem.RequestKey, fingerprint: str, reused: DomainError
) -> Recorded | None:
    ids = idem.is_replay(await uow.requests.recorded(key), fingerprint, reused)
    return None if ids is None else Recorded(tuple(ids), replayed=True)


@dataclass(frozen=True)
class Contracts:
    """The handlers, with what they need besides the unit of work."""

    catalogue: Catalogue
    mtan: MtanPort
    clock: Clock
    #: mTANs are security time, confirmed by identity on the wall clock; the business
    #: `clock` may be moved in test environments. None: the business clock.
    wall: Clock | None = None

    async def ingest(self, message: UpstreamInput, uow: ContractsUnitOfWork) -> Recorded:
        """CT-1: record one upstream message, once per (source system, message id).

        The same message again is a replay; another message with a used id is refused
        (`message_id_reused`), as is any message a rule refuses (`UpstreamRejected`).
        """
        key, fingerprint = idem.upstream_key(message), idem.upstream_fingerprint(message)
        reused = idem.message_id_reused(message)
        if (replay := await _replay(uow, key, fingerprint, reused)) is not None:
            return replay
        state = await uow.policies.load(p.policy_id_for(message.policy_number))
        ctx = p.DecisionContext(p.upstream_event_ids(message), message.occurred_at)
        events = self._decide(state, message, ctx)
        return await _save(uow, state, events, key, fingerprint, reused)

    async def ingest_many(
        self, messages: Sequence[UpstreamInput], uow: ContractsUnitOfWork
    ) -> list[Recorded]:
        """CT-1 for a fetched batch: the outcome of `ingest` of each message in order, in
        a few statements for the whole batch - one read of the request records, one of
        the policies' states, one append for every stream touched, one insert of the
        new records - instead of six round trips per message.

        A message decides on the state its policy has after the batch's earlier
        messages, and a key seen earlier in the batch is judged against that earlier
        message (a replay, or `message_id_reused`), as one `ingest` after another would.
        When an event id decided here is stored already (recorded without a record, or
        by a transaction that committed meanwhile), nothing is written yet and the batch
        is ingested message by message, where `_save` judges such an id.

        The states the batch decided are kept once its transaction committed, so the
        next batch neither reads its events back nor folds them again.
        """
        records = await uow.requests.recorded_many({idem.upstream_key(m) for m in messages})
        states = await uow.policies.load_many({p.policy_id_for(m.policy_number) for m in messages})
        loaded = dict(states)
        decided: dict[str, list[PolicyEvent]] = {}
        new_records: dict[idem.RequestKey, idem.RecordedRequest] = {}
        results: list[Recorded] = []
        for message in messages:
            key, fingerprint = idem.upstream_key(message), idem.upstream_fingerprint(message)
            if (record := records.get(key)) is not None:  # (the refusal is made only then)
                replay = idem.is_replay(record, fingerprint, idem.message_id_reused(message))
                results.append(Recorded(tuple(replay or ()), replayed=True))
                continue
            policy_id = p.policy_id_for(message.policy_number)
            state = states.get(policy_id)
            ctx = p.DecisionContext(p.upstream_event_ids(message), message.occurred_at)
            events = self._decide(state, message, ctx)
            if (after := p.fold(events, state)) is not None:
                states[policy_id] = after
            if events:
                decided.setdefault(policy_id, []).extend(events)
            ids = tuple(e.event_id for e in events)
            records[key] = new_records[key] = idem.RecordedRequest(fingerprint, ids)
            results.append(Recorded(ids, replayed=False))
        new_ids = [e.event_id for events in decided.values() for e in events]
        if new_ids and await uow.policies.stored(new_ids):
            return [await self.ingest(message, uow) for message in messages]
        try:
            await uow.policies.save_many([(loaded.get(pid), evs) for pid, evs in decided.items()])
        except DuplicateEvent as exc:
            raise Conflict(
                f"event ids of {len(messages)} upstream messages stored concurrently"
            ) from exc
        await uow.requests.record_many(new_records)
        uow.policies.keep_when_committed(states[policy_id] for policy_id in decided)
        return results

    def _decide(
        self, state: p.PolicyState | None, message: UpstreamInput, ctx: p.DecisionContext
    ) -> list[PolicyEvent]:
        match message:
            case PolicyIssuedUpstream():
                return p.issue_policy(state, message, self.catalogue, ctx)
            case PremiumPaidUpstream():
                return p.record_premium_payment(state, message, self.catalogue, ctx)
            case PolicyCancelledUpstream():
                return p.cancel_policy(state, message, ctx)
            case PolicyholdersChangedUpstream():
                return p.change_policyholders(state, message, ctx)
            case _:
                assert_never(message)

    async def record_activations(
        self, events: Sequence[identity.AccountActivated], uow: ContractsUnitOfWork
    ) -> None:
        """ID-3: remember who activated their account (again: no second effect)."""
        await uow.activations.mark_activated([(e.customer_id, e.occurred_at) for e in events])

    async def my_contracts(
        self, customer_id: str, uow: ContractsUnitOfWork
    ) -> list[ContractSummary]:
        """CT-3: the contracts this customer may see."""
        activated = await uow.activations.is_activated(customer_id)
        states = await uow.policies.of_customer(customer_id)
        return contract_summaries(states, customer_id, activated, self.catalogue)

    async def contract(self, query: ContractOf, uow: ContractsUnitOfWork) -> ContractDetails:
        """CT-4: details; raises ContractNotVisible (same answer for strangers as unknown)."""
        state = await uow.policies.load(query.policy_id)
        activated = await uow.activations.is_activated(query.customer_id)
        return details_view(state, query.customer_id, activated, self.catalogue)

    async def why_not_visible(
        self, query: WhyNotVisible, uow: ContractsUnitOfWork
    ) -> NotVisibleReason | None:
        """CT-3: "why don't I see contract X?"."""
        state = await uow.policies.load(p.policy_id_for(query.policy_number))
        activated = await uow.activations.is_activated(query.customer_id)
        return why_not_visible(query.customer_id, activated, state)

    async def request_bank_details_mtan(
        self, command: RequestBankDetailsMtan, uow: ContractsUnitOfWork
    ) -> MtanChallenge:
        """CT-4/ID-6: the mTAN for a new IBAN, bound to this policy and IBAN (dynamic
        linking). Only a change that could be made gets an SMS (SMS cost is an attack
        surface): the sole policyholder of a contract in force, a valid SEPA IBAN.
        Raises MtanRefused (no confirmed mobile, factor locked, too many SMS) or
        MtanUnavailable (identity cannot be asked)."""
        state = await uow.policies.load(command.policy_id)
        activated = await uow.activations.is_activated(command.customer_id)
        decision = p.ChangeBankDetails(
            command.customer_id, activated, command.policy_id, command.iban
        )
        state, iban = p.check_bank_details_change(state, decision, self._ctx_now())
        reference = bank_details_mtan_reference(state.policy_id, iban)
        return await self.mtan.request(command.customer_id, BANK_DETAILS_MTAN_PURPOSE, reference)

    def _ctx_now(self) -> p.DecisionContext:
        return p.DecisionContext(p.deterministic_event_ids("unused"), self.clock.now())

    async def change_bank_details(
        self, command: ChangeBankDetails, uow: ContractsUnitOfWork
    ) -> Recorded:
        """CT-4/ID-6: a new IBAN, confirmed by an mTAN bound to this policy and IBAN.

        The mTAN id is the request's key (scoped by customer and policy): the same change
        again is a replay, the same mTAN id with another IBAN is refused. identity is
        asked (and the mTAN used up) only for a change that may be made.
        """
        iban = parse_iban(command.iban)
        key = idem.client_key("bank-details", command.customer_id, command.policy_id,
                              command.mtan_id)  # fmt: skip
        fingerprint = idem.fingerprint({"iban": iban.value})
        reused = idem.idempotency_key_reused()
        if (replay := await _replay(uow, key, fingerprint, reused)) is not None:
            return replay
        state = await uow.policies.load(command.policy_id)
        activated = await uow.activations.is_activated(command.customer_id)
        ctx = p.DecisionContext(
            p.client_key_event_ids("bank", command.customer_id, command.policy_id, command.mtan_id),
            self.clock.now(),
        )
        decision = p.ChangeBankDetails(
            command.customer_id, activated, command.policy_id, command.iban
        )
        p.check_bank_details_change(state, decision, ctx)
        reference = bank_details_mtan_reference(command.policy_id, iban)
        confirmation = await self.mtan.confirmation(command.customer_id, command.mtan_id, reference)
        wall = self.wall.now() if self.wall is not None else None
        events = p.change_bank_details(state, decision, confirmation, ctx, wall)
        return await _save(uow, state, events, key, fingerprint, reused)

    async def report_move(self, command: ReportMove, uow: ContractsUnitOfWork) -> Recorded:
        """CT-4: a move. The Idempotency-Key (scoped by customer and policy) makes a retry
        a replay with the same answer; the same key with another body is refused."""
        key = idem.client_key("move", command.customer_id, command.policy_id,
                              command.idempotency_key)  # fmt: skip
        fingerprint = idem.fingerprint(
            {
                "new_address": command.new_address.model_dump(mode="json"),
                "moved_on": command.moved_on.isoformat(),
            }
        )
        reused = idem.idempotency_key_reused()
        if (replay := await _replay(uow, key, fingerprint, reused)) is not None:
            return replay
        state = await uow.policies.load(command.policy_id)
        activated = await uow.activations.is_activated(command.customer_id)
        ctx = p.DecisionContext(
            p.client_key_event_ids(
                "move", command.customer_id, command.policy_id, command.idempotency_key
            ),
            self.clock.now(),
        )
        decision = p.ReportMove(
            command.customer_id, activated, command.policy_id, command.new_address,
            command.moved_on,
        )  # fmt: skip
        events = p.report_move(state, decision, ctx)
        return await _save(uow, state, events, key, fingerprint, reused)
