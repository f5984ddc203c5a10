"""The in-memory event log's `append_many` behaves as PostgreSQL's one statement does."""

from __future__ import annotations

import pytest
from kit_factories import premium_paid
from servicekit.memory import InMemoryEventLog
from servicekit.unit_of_work import ConcurrencyConflict


async def test_in_memory_append_many_appends_every_stream_in_the_order_given() -> None:
    log = InMemoryEventLog()
    await log.append("a", 0, [premium_paid("a", 1)])
    events = [premium_paid("b", 1), premium_paid("a", 2)]
    await log.append_many([("b", 0, events[:1]), ("a", 1, events[1:]), ("c", 3, [])])
    assert await log.stream_version("a") == 2
    assert await log.stream_version("b") == 1
    assert log.published[1:] == events


async def test_in_memory_append_many_with_one_stream_moved_names_it_and_writes_nothing() -> None:
    log = InMemoryEventLog()
    await log.append("moved", 0, [premium_paid("moved", 1)])
    with pytest.raises(ConcurrencyConflict) as conflict:
        await log.append_many(
            [("fine", 0, [premium_paid("fine", 1)]), ("moved", 0, [premium_paid("moved", 1)])]
        )
    assert (conflict.value.stream_id, conflict.value.actual_version) == ("moved", 1)
    assert await log.stream_version("fine") == 0
    assert len(log.published) == 1
