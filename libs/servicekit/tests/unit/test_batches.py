"""A member's batches: applied in the order fetched, a large one while the next is decoded,
committed only once applied, and rewound - with the batch fetched after it - when it fails.

The loop is driven here without a broker: a consumer that records seeks and commits, and
an applier whose batches can be held in the middle of their transaction, or fail there.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from faststream.kafka import KafkaMessage
from kit_factories import records_at
from servicekit import batches
from servicekit.batches import PIPELINED_FROM, BatchLoop, release_batch, rewind
from servicekit.kafka import Record

FIRST = TopicPartition("t", 0)
SECOND = TopicPartition("t", 1)
POSITION = None  # a commit without offsets commits the consumer's position


class Kafka:
    """The consumer's side of a batch: seeks and commits, as they happened."""

    def __init__(self, revoked: Sequence[TopicPartition] = (), failing_commits: int = 0) -> None:
        self.revoked = set(revoked)
        self.failing_commits = failing_commits
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commits: list[dict[TopicPartition, int] | None] = []

    async def commit(self, offsets: dict[TopicPartition, int] | None = POSITION) -> None:
        if self.failing_commits:
            self.failing_commits -= 1
            raise CommitFailedError("rebalanced meanwhile")
        self.commits.append(offsets)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if partition in self.revoked:
            raise IllegalStateError(f"{partition} is not assigned")
        self.seeks.append((partition, offset))


class Fetched:
    """What FastStream hands the handler: the batch's records, its consumer, `ack`."""

    def __init__(self, kafka: Kafka, records: Sequence[Record]) -> None:
        self.raw_message = tuple(records)
        self.consumer = kafka

    async def ack(self) -> None:
        await self.consumer.commit()

    def clear_cache(self) -> None:
        pass


class Applier:
    """Logs what happens to each batch, named by its first offset; can hold or fail one."""

    name = "g"

    def __init__(self, failing: Sequence[int] = (), undecodable: Sequence[int] = ()) -> None:
        self.log: list[tuple[str, int]] = []
        self.failing = set(failing)
        self.undecodable = set(undecodable)
        self.held: dict[int, asyncio.Event] = {}

    async def decode(self, records: Sequence[Record]) -> Sequence[Record]:
        first = records[0].offset
        if first in self.undecodable:
            raise RuntimeError("a decoder's bug")
        self.log.append(("decoded", first))
        return records

    async def apply(self, records: Sequence[Record]) -> None:
        first = records[0].offset
        self.log.append(("applying", first))
        if first in self.held:
            await self.held[first].wait()
        if first in self.failing:
            self.failing.discard(first)
            raise ConnectionError("the database went away")
        self.log.append(("applied", first))

    def hold(self, first: int) -> None:
        self.held[first] = asyncio.Event()

    def applied(self) -> list[int]:
        return [first for what, first in self.log if what == "applied"]


def batch(kafka: Kafka, first: int, size: int, partition: int = 0) -> Any:
    return Fetched(kafka, records_at(*(("t", partition, o) for o in range(first, first + size))))


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until `condition` holds (a bounded number of loop turns)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "RETRY_PAUSE_SECONDS", (0.0,))


async def test_a_small_batch_is_applied_before_the_handler_returns_and_commits_the_position() -> (
    None
):
    kafka, applier = Kafka(), Applier()
    await BatchLoop(applier)(batch(kafka, 0, 3))
    assert applier.applied() == [0]
    assert kafka.commits == [POSITION]


async def test_a_large_batch_is_applied_while_the_next_is_decoded_and_each_commits_its_own() -> (
    None
):
    kafka, applier = Kafka(), Applier()
    loop = BatchLoop(applier)
    applier.hold(0)
    await loop(batch(kafka, 0, PIPELINED_FROM))  # returns with the batch in flight
    await until(lambda: ("applying", 0) in applier.log)
    second = asyncio.create_task(loop(batch(kafka, PIPELINED_FROM, PIPELINED_FROM)))
    await until(lambda: ("decoded", PIPELINED_FROM) in applier.log)
    assert applier.applied() == [], "decoded while the batch before it was in flight"
    applier.held[0].set()
    await second
    await loop.drain()
    assert applier.log == [
        ("decoded", 0),
        ("applying", 0),
        ("decoded", PIPELINED_FROM),
        ("applied", 0),
        ("applying", PIPELINED_FROM),
        ("applied", PIPELINED_FROM),
    ]
    # Offsets of the batch itself, not the position (which already includes the next).
    assert kafka.commits == [{FIRST: PIPELINED_FROM}, {FIRST: 2 * PIPELINED_FROM}]


async def test_when_the_batch_in_flight_fails_the_next_is_dropped_and_both_are_read_again() -> None:
    kafka, applier = Kafka(), Applier(failing=[0])
    loop = BatchLoop(applier)
    size = PIPELINED_FROM
    second = [*batch(kafka, size, size).raw_message, *records_at(("t", 1, 50))]
    await loop(batch(kafka, 0, size))
    await loop(Fetched(kafka, second))
    assert applier.applied() == []
    assert ("applying", size) not in applier.log, "the batch after a failed one is dropped"
    # The failed batch rewinds itself, then the handler rewinds it with the one it holds.
    assert kafka.seeks == [(FIRST, 0), (FIRST, 0), (SECOND, 50)]
    assert kafka.commits == []

    await loop(batch(kafka, 0, size))  # read again from the first records
    await loop(Fetched(kafka, second))
    await loop.drain()
    assert applier.applied() == [0, size]
    assert kafka.commits == [{FIRST: size}, {FIRST: 2 * size, SECOND: 51}]


async def test_a_batch_that_cannot_be_decoded_is_rewound_once_the_one_in_flight_is_applied() -> (
    None
):
    kafka, applier = Kafka(), Applier(undecodable=[PIPELINED_FROM])
    loop = BatchLoop(applier)
    await loop(batch(kafka, 0, PIPELINED_FROM))
    await loop(batch(kafka, PIPELINED_FROM, PIPELINED_FROM))
    assert applier.applied() == [0]
    assert kafka.commits == [{FIRST: PIPELINED_FROM}]
    assert kafka.seeks == [(FIRST, PIPELINED_FROM)]


async def test_a_small_batch_that_fails_is_rewound_before_the_handler_returns() -> None:
    kafka, applier = Kafka(), Applier(failing=[7])
    loop = BatchLoop(applier)
    await loop(batch(kafka, 7, 3))
    assert kafka.seeks == [(FIRST, 7)]
    await loop(batch(kafka, 7, 3))  # read again: applied, not dropped
    assert applier.applied() == [7]
    assert kafka.commits == [POSITION]


async def test_a_failed_commit_is_left_to_the_inbox_and_the_next_batch_goes_on() -> None:
    kafka, applier = Kafka(failing_commits=1), Applier()
    loop = BatchLoop(applier)
    await loop(batch(kafka, 0, PIPELINED_FROM))
    await loop(batch(kafka, PIPELINED_FROM, 3))
    assert applier.applied() == [0, PIPELINED_FROM]
    assert kafka.commits == [POSITION]
    assert kafka.seeks == []


async def test_draining_waits_for_the_batch_in_flight_and_later_batches_apply_at_once() -> None:
    kafka, applier = Kafka(), Applier()
    loop = BatchLoop(applier)
    applier.hold(0)
    await loop(batch(kafka, 0, PIPELINED_FROM))
    draining = asyncio.create_task(loop.drain())
    await until(lambda: ("applying", 0) in applier.log)
    assert not draining.done()
    applier.held[0].set()
    await draining
    assert applier.applied() == [0]
    await loop(batch(kafka, PIPELINED_FROM, PIPELINED_FROM))
    assert applier.applied() == [0, PIPELINED_FROM], "applied before the handler returned"
    assert kafka.commits == [{FIRST: PIPELINED_FROM}, POSITION]


def test_rewinding_a_batch_seeks_each_partition_back_to_its_first_record() -> None:
    kafka = Kafka()
    rewind(kafka, records_at(("a", 0, 7), ("a", 1, 3), ("a", 0, 8), ("b", 0, 40)))
    assert kafka.seeks == [
        (TopicPartition("a", 0), 7),
        (TopicPartition("a", 1), 3),
        (TopicPartition("b", 0), 40),
    ]


def test_rewinding_skips_a_revoked_partition_and_still_rewinds_the_others() -> None:
    kafka = Kafka(revoked=[TopicPartition("a", 0)])
    rewind(kafka, records_at(("a", 0, 7), ("a", 1, 3)))
    assert kafka.seeks == [(TopicPartition("a", 1), 3)]


@contextmanager
def no_cyclic_collection() -> Iterator[None]:
    """Only reference counting frees objects meanwhile: what is kept by a cycle stays."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def test_a_handled_batch_lets_go_of_its_records_and_its_message_at_once() -> None:
    records = tuple(records_at(("a", 0, 7), ("a", 0, 8), ("a", 0, 9)))
    message = KafkaMessage(records, b"", consumer=Kafka())

    async def itself(decoded: KafkaMessage) -> KafkaMessage:  # as the stream's decoder
        return decoded

    message.set_decoder(itself)
    assert await message.decode() is message  # FastStream caches it: message -> message
    later_record, message_itself = weakref.ref(records[1]), weakref.ref(message)
    with no_cyclic_collection():
        release_batch(message)
        assert message.raw_message == records[:1]  # what FastStream may still read
        del records
        assert later_record() is None
        del message
        assert message_itself() is None
