"""CT-1 intake batches keep the policy states they decided once their transaction
committed, and only then (the in-memory twin behaves as PostgreSQL's adapter)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from contracts.adapters.memory import InMemoryContractsUnitOfWork
from contracts.adapters.states import PolicyStates
from contracts.domain.catalogue import Catalogue
from contracts.domain.errors import ReasonCode, UpstreamRejected
from contracts.handlers import Contracts, Recorded, UpstreamInput
from servicekit.clock import FixedClock
from servicekit.memory import memory_transactions
from servicekit.unit_of_work import Conflict

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # conftest's


class Intake:
    def __init__(self) -> None:
        self.states = PolicyStates()
        self.uow = InMemoryContractsUnitOfWork(self.states)
        self.tx = memory_transactions(self.uow)
        self.contracts = Contracts(Catalogue.default(), None, FixedClock(T0))  # type: ignore[arg-type]

    async def batch(self, messages: list[UpstreamInput]) -> list[Recorded]:
        return await self.tx.execute(self.contracts.ingest_many, messages)


async def test_ct1_a_committed_batch_keeps_the_states_it_decided_as_the_store_folds_them(
    upstream: Any,
) -> None:
    intake = Intake()
    await intake.batch([upstream.issued("P1"), upstream.issued("P2")])
    await intake.batch([upstream.paid("P1", payment_id="a"), upstream.paid("P1", payment_id="b"),
                        upstream.paid("P2", payment_id="c")])  # fmt: skip
    kept = intake.states.snapshot()
    assert kept == {
        policy_id: await intake.uow.policies.load(policy_id) for policy_id in ("P1", "P2")
    }
    assert (kept["P1"].version, kept["P2"].version) == (3, 2)


async def test_ct1_batches_on_kept_states_decide_as_batches_reading_whole_streams(
    upstream: Any,
) -> None:
    kept, fresh = Intake(), Intake()
    first = [upstream.issued("P1"), upstream.paid("P1", payment_id="a")]
    again = upstream.paid("P1", payment_id="a")  # the same payment, another message id
    later = [again, upstream.paid("P1", payment_id="b"), first[1]]
    assert await kept.batch(first) == await fresh.batch(first)
    fresh.states = PolicyStates()  # forgets all: the next batch reads the whole stream
    fresh.uow.policies.states = fresh.states
    assert await kept.batch(later) == await fresh.batch(later)
    assert kept.uow.events.streams == fresh.uow.events.streams
    assert kept.states.snapshot() == fresh.states.snapshot()


async def test_ct1_a_refused_batch_leaves_the_kept_states_as_they_were(upstream: Any) -> None:
    intake = Intake()
    await intake.batch([upstream.issued("P1"), upstream.paid("P1", payment_id="a")])
    before = intake.states.snapshot()
    reused = [upstream.paid("P1", payment_id="b", message_id="M"),
              upstream.paid("P1", payment_id="c", message_id="M")]  # fmt: skip
    with pytest.raises(UpstreamRejected) as refused:
        await intake.batch(reused)
    assert refused.value.code is ReasonCode.MESSAGE_ID_REUSED
    assert intake.states.snapshot() == before


async def test_ct1_a_batch_retried_after_a_conflict_keeps_only_what_committed(
    upstream: Any,
) -> None:
    """The first attempt decided and wrote, then its transaction failed: nothing of it is
    kept; the retry's states are, and they are what the store folds."""
    intake = Intake()
    await intake.batch([upstream.issued("P1")])
    before = intake.states.snapshot()
    batch = [upstream.paid("P1", payment_id="a")]
    attempts: list[dict[str, Any]] = []

    async def conflicting_once(uow: InMemoryContractsUnitOfWork) -> list[Recorded]:
        recorded = await intake.contracts.ingest_many(batch, uow)
        if not attempts:
            attempts.append(intake.states.snapshot())
            raise Conflict("could not serialize access")
        return recorded

    await intake.tx.run(conflicting_once)
    assert attempts == [before], "not kept while its transaction was open"
    state = await intake.uow.policies.load("P1")
    assert state is not None
    assert state.version == 2
    assert intake.states.snapshot() == {"P1": state}
