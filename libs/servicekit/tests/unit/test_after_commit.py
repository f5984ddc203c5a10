"""A unit of work's after-commit callbacks: run once its transaction committed, dropped
when it did not - on any `begin`, the in-memory one included."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from kit_factories import conflicting_once_at_commit
from servicekit.memory import InMemoryUnitOfWork, memory_transactions
from servicekit.unit_of_work import AfterCommit, Transactions


class Hooked(InMemoryUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.after_commit = AfterCommit()


class Boom(Exception):
    pass


async def test_callbacks_run_after_the_transaction_committed_and_only_then() -> None:
    uow, ran = Hooked(), list[str]()
    left_transaction: list[list[str]] = []

    @asynccontextmanager
    async def begin() -> AsyncIterator[Hooked]:
        yield uow
        left_transaction.append(list(ran))  # what had run when the commit happened

    async def work(got: Hooked) -> str:
        got.after_commit(lambda: ran.append("kept"))
        return "done"

    assert await Transactions(begin).run(work) == "done"
    assert left_transaction == [[]], "nothing ran inside the transaction"
    assert ran == ["kept"]
    await Transactions(begin).run(lambda _: _nothing())
    assert ran == ["kept"], "a callback runs once, not again after the next transaction"


async def _nothing() -> None:
    return None


async def test_callbacks_of_work_that_raised_are_dropped_unrun() -> None:
    uow, ran = Hooked(), list[str]()

    async def failing(got: Hooked) -> None:
        got.after_commit(lambda: ran.append("kept"))
        raise Boom

    with pytest.raises(Boom):
        await memory_transactions(uow).run(failing)
    await memory_transactions(uow).run(lambda _: _nothing())
    assert ran == []


async def test_callbacks_of_a_transaction_whose_commit_failed_are_dropped_unrun() -> None:
    uow, ran = Hooked(), list[int]()
    attempt = 0

    async def work(got: Hooked) -> None:
        nonlocal attempt
        attempt += 1
        got.after_commit(functools.partial(ran.append, attempt))

    await conflicting_once_at_commit(uow).run(work)
    assert ran == [2], "only the attempt that committed"


async def test_a_unit_of_work_without_after_commit_runs_as_before() -> None:
    uow = InMemoryUnitOfWork()

    async def work(got: InMemoryUnitOfWork) -> int:
        return 42

    assert await memory_transactions(uow).run(work) == 42
