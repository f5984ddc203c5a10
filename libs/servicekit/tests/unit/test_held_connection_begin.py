"""`postgres.HeldConnection` when the server ended the kept connection and asyncpg has not
noticed yet: BEGIN fails before anything ran, so the connection is given back and the
transaction begins once more on a fresh one (the race that the integration test of a
terminated backend hits only now and then, made certain here)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, cast

import asyncpg
import pytest
from servicekit.postgres import HeldConnection


class FakeConnection:
    def __init__(self) -> None:
        self.ended_by_the_server = False
        self.committed = 0

    def is_closed(self) -> bool:
        return False  # what asyncpg says until it processed the server's goodbye

    def transaction(self) -> FakeTransaction:
        return FakeTransaction(self)


class FakeTransaction:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn

    async def __aenter__(self) -> None:
        if self.conn.ended_by_the_server:
            raise asyncpg.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            )

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.conn.committed += 1


class FakePool:
    def __init__(self, *, every_begin_fails: bool = False) -> None:
        self.every_begin_fails = every_begin_fails
        self.released: list[FakeConnection] = []

    async def acquire(self) -> FakeConnection:
        conn = FakeConnection()
        conn.ended_by_the_server = self.every_begin_fails
        return conn

    async def release(self, conn: FakeConnection) -> None:
        self.released.append(conn)


def held_on(pool: FakePool) -> HeldConnection[Any]:
    return HeldConnection(cast(asyncpg.Pool, pool), lambda conn: conn)


async def test_a_kept_connection_whose_begin_fails_is_given_back_and_a_fresh_one_runs_it() -> None:
    pool = FakePool()
    begin = held_on(pool)
    async with begin() as first:
        pass
    async with begin() as again:
        pass
    assert again is first, "kept between transactions"
    first.ended_by_the_server = True

    async with begin() as fresh:
        pass

    assert fresh is not first
    assert fresh.committed == 1
    assert pool.released == [first]
    await begin.close()
    assert pool.released == [first, fresh]


async def test_a_begin_failing_on_a_fresh_connection_too_is_raised_and_nothing_is_kept() -> None:
    pool = FakePool(every_begin_fails=True)
    begin = held_on(pool)

    with pytest.raises(asyncpg.InternalClientError):
        async with begin():
            pytest.fail("no transaction began")

    assert len(pool.released) == 1, "the fresh connection went back too"
    await begin.close()
    assert len(pool.released) == 1
