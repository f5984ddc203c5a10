"""CT-1 intake batches on PostgreSQL keep the policy states they decided once their
transaction committed - equal to the fold of the stored stream - and never a state of a
transaction that rolled back."""

from __future__ import annotations

from typing import Any

import pytest
from contracts.adapters.postgres import PostgresContractsUnitOfWork
from contracts.adapters.states import PolicyStates
from contracts.domain.policy import PolicyState
from contracts.handlers import Recorded, UpstreamInput
from contracts_harness import Running, contracts_service, issued, paid
from servicekit.unit_of_work import Conflict, Transactions

pytestmark = pytest.mark.integration


class Boom(Exception):
    pass


def intake(running: Running) -> tuple[PolicyStates, Transactions[PostgresContractsUnitOfWork]]:
    states = PolicyStates()
    runtime = running.service.runtime
    return states, runtime.transactions(
        lambda conn, store: PostgresContractsUnitOfWork(conn, store, states)
    )


async def stored_state(running: Running, policy_id: str) -> PolicyState | None:
    async with running.service.runtime.pool.acquire() as conn:
        store = running.service.runtime.store
        return await PostgresContractsUnitOfWork(conn, store).policies.load(policy_id)


async def test_ct1_a_committed_batch_keeps_the_states_it_decided_as_the_store_folds_them() -> None:
    async with contracts_service() as running:
        states, tx = intake(running)
        ingest = running.service.contracts.ingest_many
        await tx.execute(ingest, [issued("PHV-1", ("anna",)), issued("PHV-2", ("ben",))])
        await tx.execute(ingest, [paid("PHV-1"), paid("PHV-1", 1_000), paid("PHV-2")])
        kept = states.snapshot()
        assert kept == {p: await stored_state(running, p) for p in ("PHV-1", "PHV-2")}
        assert (kept["PHV-1"].version, kept["PHV-2"].version) == (3, 2)


async def test_ct1_a_failed_or_retried_batch_leaves_the_kept_states_as_they_were() -> None:
    async with contracts_service() as running:
        states, tx = intake(running)
        ingest = running.service.contracts.ingest_many
        await tx.execute(ingest, [issued("PHV-3", ("carl",)), paid("PHV-3")])
        before = states.snapshot()
        batch: list[UpstreamInput] = [paid("PHV-3")]

        async def failing(uow: PostgresContractsUnitOfWork) -> None:
            await ingest(batch, uow)
            raise Boom

        with pytest.raises(Boom):
            await tx.run(failing)
        assert states.snapshot() == before
        assert await stored_state(running, "PHV-3") == before["PHV-3"], "rolled back"

        seen: list[dict[str, Any]] = []

        async def conflicting_once(uow: PostgresContractsUnitOfWork) -> list[Recorded]:
            recorded = await ingest(batch, uow)
            if not seen:
                seen.append(states.snapshot())
                raise Conflict("could not serialize access")
            return recorded

        await tx.run(conflicting_once)
        assert seen == [before], "not kept while its transaction was open"
        after = await stored_state(running, "PHV-3")
        assert after is not None
        assert after.version == 3
        assert states.snapshot() == {"PHV-3": after}
