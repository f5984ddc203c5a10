"""One bad message never stops a consumer (issue 7, stream side), on the real broker.

Each test is a defect of the old hand-written consumer: a value the database refuses,
a record too large to dead-letter with its headers, headers FastStream cannot read, a
dead letter that could never be replayed, dead-letter topics outside the topic prefix,
and a restarted instance waiting out the session timeout for its own partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from contracts_schemas.contracts import PremiumPaid
from kit_factories import premium_paid
from kit_running import (
    consuming,
    effects,
    eventually,
    handled,
    record_effects,
    settings,
    started,
    stream_on,
)
from kit_running import until as until_true
from servicekit.batches import PIPELINED_FROM
from servicekit.kafka import Headers, OutgoingRecord, publish_all
from servicekit.postgres import PostgresUnitOfWork
from servicekit.stream import Rejected
from servicekit.testing import header, read_topic, unique

pytestmark = pytest.mark.integration

REFUSED_AMOUNT = 13  # the handler below stores a text PostgreSQL refuses for this amount
# Accepted by the broker (1 MiB) and the producer (1,048,576 bytes a request); with the
# x-dlq-* headers added, a dead letter carrying it whole is not (1,048,705 bytes).
JUST_UNDER_A_MEBIBYTE = 1_048_400


def records_of(topic: str, *messages: Contract, key: str = "p1") -> list[OutgoingRecord]:
    encoded = [encode(m, "/test") for m in messages]
    return [OutgoingRecord(topic, key, e.data, e.headers()) for e in encoded]


async def record_effects_refusing_nul(
    messages: Sequence[Contract], uow: PostgresUnitOfWork
) -> None:
    """Stores a text with U+0000 for one amount, which PostgreSQL refuses (a DataError)."""
    rows = []
    for message in messages:
        assert isinstance(message, PremiumPaid)
        nul = "\x00" if message.amount_cents == REFUSED_AMOUNT else ""
        rows.append((f"{message.event_id}{nul}", message.amount_cents))
    await uow.conn.executemany("INSERT INTO effects (event_id, amount) VALUES ($1, $2)", rows)


async def test_a_value_the_database_refuses_is_dead_lettered_and_later_messages_still_apply(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    topic, group = unique("test.unstorable"), unique("g")
    refused = premium_paid("p1", 2, amount_cents=REFUSED_AMOUNT)
    before, after = premium_paid("p1", 1, 100), premium_paid("p1", 3, 300)
    await publish_all(producer, records_of(topic, before, refused, after))

    stream, consumer = consuming(
        pool, settings(bootstrap), group, topic, record_effects_refusing_nul
    )
    async with started(stream):
        await until_true(lambda: consumer.applied == 2 and consumer.dead_lettered == 1)
        later = premium_paid("p1", 4, 400)
        await publish_all(producer, records_of(topic, later))
        await until_true(lambda: consumer.applied == 3)

    assert [r["amount"] for r in await effects(pool)] == [100, 300, 400], "the consumer went on"
    (dead,) = await read_topic(bootstrap, f"portal.dlq.{group}", at_least=1)
    assert header(dead, "ce_id") == str(refused.event_id)
    assert "0x00" in (header(dead, "x-dlq-reason") or "")


async def test_an_undecodable_record_just_under_the_broker_limit_is_dead_lettered_by_reference(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    topic, group = unique("test.huge"), unique("g")
    huge = OutgoingRecord(topic, "p1", b"{" * JUST_UNDER_A_MEBIBYTE, [])
    later = [premium_paid("p1", v, amount_cents=v) for v in range(1, 3001)]
    await publish_all(producer, [huge, *records_of(topic, *later)])

    stream, consumer = consuming(pool, settings(bootstrap), group, topic)
    async with started(stream):
        await until_true(lambda: handled(consumer) == 3001, within=120)

    assert (consumer.applied, consumer.dead_lettered) == (3000, 1)
    assert len(await effects(pool)) == 3000, "the partition moved on past the huge record"
    (dead,) = await read_topic(bootstrap, f"portal.dlq.{group}", at_least=1)
    assert dead.value == b""
    assert (header(dead, "x-dlq-body-omitted") or "").startswith(f"{JUST_UNDER_A_MEBIBYTE} bytes")
    assert header(dead, "x-dlq-original-offset") == "0"
    assert header(dead, "x-dlq-reason")


async def test_records_whose_headers_are_not_text_are_dead_lettered_and_their_batch_applies(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    topic, group = unique("test.headers"), unique("g")
    first, latin1, no_id, last = (premium_paid("p1", v, amount_cents=v) for v in (1, 2, 3, 4))
    [good_first, not_utf8, id_without_value, good_last] = records_of(
        topic, first, latin1, no_id, last
    )
    not_utf8.headers[:] = _replaced(not_utf8.headers, "ce_source", "/m\xfcnchen".encode("latin-1"))
    id_without_value.headers[:] = _replaced(id_without_value.headers, "ce_id", None)
    # All in the broker before the consumer starts: they come in one batch.
    await publish_all(producer, [good_first, not_utf8, id_without_value, good_last])

    stream, consumer = consuming(pool, settings(bootstrap), group, topic)
    async with started(stream):
        await until_true(lambda: consumer.applied == 2 and consumer.dead_lettered == 2)

    assert [r["amount"] for r in await effects(pool)] == [1, 4]
    dead = await read_topic(bootstrap, f"portal.dlq.{group}", at_least=2)
    reasons = sorted(header(d, "x-dlq-reason") or "" for d in dead)
    assert "header ce_source is not UTF-8" in reasons
    assert "missing CloudEvents attributes: id" in reasons


async def test_a_rejected_message_is_not_remembered_so_its_replayed_dead_letter_applies_once(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    topic, group = unique("test.replay"), unique("g")
    known_policies = {"p-known"}

    async def apply_known(messages: Sequence[Contract], uow: PostgresUnitOfWork) -> None:
        for message in messages:
            assert isinstance(message, PremiumPaid)
            if message.policy_id not in known_policies:
                raise Rejected(f"policy {message.policy_id} is unknown")
        await record_effects(messages, uow)

    before, unknown = premium_paid("p-known", 1, 100), premium_paid("p-new", 1, 200)
    await publish_all(producer, records_of(topic, before, unknown))
    stream, consumer = consuming(pool, settings(bootstrap), group, topic, apply_known)
    async with started(stream):
        await until_true(lambda: consumer.applied == 1 and consumer.dead_lettered == 1)
        (dead,) = await read_topic(bootstrap, f"portal.dlq.{group}", at_least=1)
        assert header(dead, "x-dlq-reason") == "policy p-new is unknown"

        known_policies.add("p-new")  # the cause is mended; the operator replays, twice
        await publish_all(producer, [_replay(dead), _replay(dead)])
        await until_true(lambda: consumer.applied == 2 and consumer.duplicates == 1)

    rows = await effects(pool)
    assert [r["event_id"] for r in rows] == [str(before.event_id), str(unknown.event_id)]


class LosingTheConnectionOnce:
    """Records the effects; then, the first time `of_batch` holds for a batch's messages,
    the server ends the connection in the middle of the batch's transaction."""

    def __init__(self, of_batch: Callable[[Sequence[Contract]], bool] = lambda _: True) -> None:
        self.lost = 0
        self._of_batch = of_batch

    async def __call__(self, messages: Sequence[Contract], uow: PostgresUnitOfWork) -> None:
        await record_effects(messages, uow)
        if not self.lost and self._of_batch(messages):
            self.lost += 1
            await uow.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")


async def test_a_batch_whose_database_connection_dies_is_read_again_and_applied_once(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    topic, group = unique("test.db-loss"), unique("g")
    paid = [premium_paid("p1", v, amount_cents=v) for v in range(1, 6)]
    await publish_all(producer, records_of(topic, *paid))
    handler = LosingTheConnectionOnce()
    stream, consumer = consuming(pool, settings(bootstrap), group, topic, handler)
    async with started(stream):
        await eventually(lambda: _committed_total(bootstrap, group, 5))
        assert consumer.applied == 5

    assert handler.lost == 1
    assert [r["amount"] for r in await effects(pool)] == [1, 2, 3, 4, 5], "each once"


async def test_a_large_batch_whose_connection_dies_in_flight_is_read_again_and_applied_once(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    """A batch of PIPELINED_FROM records or more is applied while the next is fetched and
    decoded; when it fails, that next batch is dropped and both are read again."""
    topic, group = unique("test.pipelined"), unique("g")
    policies, per_policy = 12, 200  # more than one batch (BATCH_RECORDS)
    paid = [
        premium_paid(f"p{n % policies}", n // policies + 1, amount_cents=n + 1)
        for n in range(policies * per_policy)
    ]
    await publish_all(producer, [r for m in paid for r in records_of(topic, m, key=m.policy_id)])
    handler = LosingTheConnectionOnce(lambda messages: len(messages) >= PIPELINED_FROM)
    stream, consumer = consuming(pool, settings(bootstrap), group, topic, handler)
    async with started(stream):
        await eventually(lambda: _committed_total(bootstrap, group, len(paid)))
        assert (consumer.applied, consumer.duplicates) == (len(paid), 0)

    assert handler.lost == 1, "a large batch was applied in flight, and failed"
    amounts = [r["amount"] for r in await effects(pool)]
    assert sorted(amounts) == [m.amount_cents for m in paid], "each once"
    for policy in range(policies):  # order per key: amounts rise with the versions
        of_policy = [a for a in amounts if (a - 1) % policies == policy]
        assert of_policy == sorted(of_policy)


async def test_dead_letters_are_named_within_the_topic_prefix(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    prefix, group = f"{unique('env')}.", unique("g")
    topic = unique("test.prefixed")
    await publish_all(producer, [OutgoingRecord(prefix + topic, "p1", b"not json", [])])

    stream, consumer = consuming(pool, settings(bootstrap, prefix=prefix), group, topic)
    async with started(stream):
        await until_true(lambda: consumer.dead_lettered == 1)

    (dead,) = await read_topic(bootstrap, f"{prefix}portal.dlq.{group}", at_least=1)
    assert header(dead, "x-dlq-original-topic") == prefix + topic


async def test_an_instance_restarted_with_its_id_takes_its_partitions_back_as_the_same_member(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    topic, group, instance = unique("test.static"), unique("g"), unique("instance")
    config = settings(bootstrap, instance=instance)
    static_id = f"{group}-{instance}"  # the group_instance_id of this instance's consumer

    first, first_consumer = consuming(pool, config, group, topic)
    async with started(first):
        await publish_all(producer, records_of(topic, premium_paid("p1", 1, 100)))
        await until_true(lambda: first_consumer.applied == 1)
        (before,) = await _members(bootstrap, group)
    # Stopped without leaving the group (a static member never does), as a killed one.

    second, consumer = consuming(pool, config, group, topic)
    async with started(second):
        await eventually(lambda: _replaced_as_static_member(bootstrap, group, before, topic))
        (member,) = await _members(bootstrap, group)
        assert member.member_id.startswith(f"{static_id}-"), "the broker names static members"
        assert member.partitions == {(topic, p) for p in range(3)}
        await publish_all(producer, records_of(topic, premium_paid("p1", 2, 200)))
        await until_true(lambda: consumer.applied == 1)

    assert [r["amount"] for r in await effects(pool)] == [100, 200]


async def test_members_of_one_group_in_a_process_split_the_partitions_and_apply_each_event_once(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, bootstrap: str
) -> None:
    topic, group, instance = unique("test.members"), unique("g"), unique("instance")
    config = settings(bootstrap, instance=instance).model_copy(
        update={"kafka_consumers_per_group": 3}
    )
    stream = stream_on(pool, config)
    stream.subscriber(group, topic)(record_effects)
    policies = [f"p{n}" for n in range(9)]
    async with started(stream):
        await eventually(lambda: _one_partition_each(bootstrap, group, 3))
        members = await _members(bootstrap, group)
        static_ids = {f"{group}-{instance}", f"{group}-{instance}-1", f"{group}-{instance}-2"}
        # The broker names a static member by its instance id, a dash and a UUID.
        assert {m.member_id[: -len("-") - 36] for m in members} == static_ids
        for version in (1, 2):
            paid = [premium_paid(p, version, version * 100 + n) for n, p in enumerate(policies)]
            await publish_all(
                producer, [r for m in paid for r in records_of(topic, m, key=m.policy_id)]
            )
        await until_true(lambda: sum(c.applied for c in stream.consumers) == 18)

    assert all(c.applied for c in stream.consumers), "every member applied its partition"
    assert sum(c.duplicates for c in stream.consumers) == 0
    amounts = [r["amount"] for r in await effects(pool)]
    assert sorted(amounts) == sorted(v * 100 + n for v in (1, 2) for n in range(9))
    for n in range(9):  # order per key: each policy's first payment before its second
        assert amounts.index(100 + n) < amounts.index(200 + n)


async def _one_partition_each(bootstrap: str, group: str, count: int) -> bool:
    members = await _members(bootstrap, group)
    return len(members) == count and all(len(m.partitions) == 1 for m in members)


async def _committed_total(bootstrap: str, group: str, total: int) -> bool:
    """The group's committed offsets (the next record of each partition) add up to `total`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(position.offset for position in committed.values()) == total


class _Member:
    def __init__(self, member_id: str, assignment: bytes) -> None:
        self.member_id = member_id
        decoded = ConsumerProtocolMemberAssignment.decode(assignment) if assignment else None
        self.partitions = {
            (topic, partition)
            for topic, partitions in (decoded.assignment if decoded else [])
            for partition in partitions
        }


async def _members(bootstrap: str, group: str) -> list[_Member]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (described,) = response.to_object()["groups"]
    if described["state"] != "Stable":
        return []
    return [_Member(m["member_id"], m["member_assignment"]) for m in described["members"]]


async def _replaced_as_static_member(
    bootstrap: str, group: str, before: _Member, topic: str
) -> bool:
    """One member, not the stopped one, holding every partition of the topic."""
    members = await _members(bootstrap, group)
    return (
        len(members) == 1
        and members[0].member_id != before.member_id
        and len(members[0].partitions) == 3
        and all(t == topic for t, _ in members[0].partitions)
    )


def _replaced(headers: Headers, name: str, value: bytes | None) -> Headers:
    return [(k, value if k == name else v) for k, v in headers]  # type: ignore[misc]


def _replay(dead: ConsumerRecord[bytes, bytes]) -> OutgoingRecord:
    """What an operator's replay sends: the dead letter's record, to its original topic."""
    headers = [(k, bytes(v)) for k, v in dead.headers if not k.startswith("x-dlq-")]
    topic = header(dead, "x-dlq-original-topic") or ""
    return OutgoingRecord(topic, (dead.key or b"").decode(), dead.value or b"", headers)
