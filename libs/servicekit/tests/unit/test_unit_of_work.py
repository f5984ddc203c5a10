"""Transactions and the in-memory unit of work, without a database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from kit_factories import premium_paid
from servicekit.memory import InMemoryEventLog, InMemoryUnitOfWork, memory_transactions
from servicekit.unit_of_work import (
    ConcurrencyConflict,
    Conflict,
    DuplicateEvent,
    Transactions,
    Unstorable,
)


class CountingBegin:
    """A `begin` that counts the transactions it opened and how many were left cleanly."""

    def __init__(self) -> None:
        self.opened = 0
        self.committed = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[InMemoryUnitOfWork]:
        self.opened += 1
        yield InMemoryUnitOfWork()
        self.committed += 1


async def test_transactions_run_the_work_again_on_a_conflict_and_return_its_result() -> None:
    begin = CountingBegin()
    conflicts = [Conflict("first"), Conflict("second")]

    async def work(_uow: InMemoryUnitOfWork) -> str:
        if conflicts:
            raise conflicts.pop(0)
        return "done"

    assert await Transactions(begin, attempts=3).run(work) == "done"
    assert (begin.opened, begin.committed) == (3, 1)


async def test_transactions_give_up_after_their_attempts_with_the_last_conflict() -> None:
    begin = CountingBegin()

    async def always_conflicting(_uow: InMemoryUnitOfWork) -> None:
        raise ConcurrencyConflict("s-1", 1, begin.opened + 1)

    with pytest.raises(ConcurrencyConflict) as raised:
        await Transactions(begin, attempts=4).run(always_conflicting)
    assert begin.opened == 4
    assert raised.value.actual_version == 5


async def test_transactions_never_retry_what_is_not_a_conflict() -> None:
    begin = CountingBegin()

    async def refused(_uow: InMemoryUnitOfWork) -> None:
        raise Unstorable("invalid byte sequence")

    with pytest.raises(Unstorable):
        await Transactions(begin).run(refused)
    assert begin.opened == 1


async def test_execute_hands_the_command_and_the_unit_of_work_to_the_handler() -> None:
    uow = InMemoryUnitOfWork()

    async def handler(command: int, got: InMemoryUnitOfWork) -> int:
        assert got is uow
        return command * 2

    assert await memory_transactions(uow).execute(handler, 21) == 42


async def test_memory_transactions_roll_the_state_back_when_the_work_raises() -> None:
    uow = InMemoryUnitOfWork()
    kept, lost = premium_paid("p-1", 1), premium_paid("p-2", 1)
    transactions = memory_transactions(uow)
    await transactions.run(lambda u: u.events.append("p-1", 0, [kept]))

    async def append_then_fail(u: InMemoryUnitOfWork) -> None:
        await u.events.append("p-2", 0, [lost])
        await u.inbox.remember("consumer", ["/test#1"])
        raise RuntimeError("the handler failed after writing")

    with pytest.raises(RuntimeError):
        await transactions.run(append_then_fail)
    assert dict(uow.events.streams) == {"p-1": [kept]}
    assert uow.events.published == [kept]
    assert await uow.inbox.remember("consumer", ["/test#1"]) == {"/test#1"}
    await uow.events.append("p-2", 0, [lost])  # its id was rolled back with it


async def test_memory_transactions_retry_a_conflict_on_the_rolled_back_state() -> None:
    uow = InMemoryUnitOfWork()
    first = premium_paid("p-1", 1)
    tries = 0

    async def conflicting_once(u: InMemoryUnitOfWork) -> None:
        nonlocal tries
        tries += 1
        await u.events.append("p-1", 0, [first])
        if tries == 1:
            raise Conflict("decided on stale state")

    await memory_transactions(uow).run(conflicting_once)
    assert uow.events.streams["p-1"] == [first]


async def test_in_memory_append_at_a_stale_version_is_a_concurrency_conflict() -> None:
    log = InMemoryEventLog()
    await log.append("p-1", 0, [premium_paid("p-1", 1)])
    with pytest.raises(ConcurrencyConflict) as raised:
        await log.append("p-1", 0, [premium_paid("p-1", 1)])
    assert (raised.value.expected_version, raised.value.actual_version) == (0, 1)
    assert await log.stream_version("p-1") == 1


async def test_in_memory_append_of_a_stored_event_id_is_a_duplicate_even_in_another_stream() -> (
    None
):
    log = InMemoryEventLog()
    event = premium_paid("p-1", 1)
    await log.append("p-1", 0, [event])
    with pytest.raises(DuplicateEvent):
        await log.append("p-2", 0, [event])
    other = premium_paid("p-3", 1)
    with pytest.raises(DuplicateEvent):
        await log.append("p-3", 0, [other, other])
    assert await log.stream_version("p-2") == 0
    assert await log.stream_version("p-3") == 0


async def test_in_memory_streams_read_back_in_order_with_their_versions() -> None:
    log = InMemoryEventLog()
    events = [premium_paid("p-1", v) for v in (1, 2, 3)]
    await log.append("p-1", 0, events[:2])
    await log.append("p-1", 2, events[2:])
    recorded = await log.read_stream("p-1")
    assert [(r.event_id, r.stream_version) for r in recorded] == [
        (e.event_id, v) for v, e in enumerate(events, start=1)
    ]
    assert await log.read_stream("nothing") == []
