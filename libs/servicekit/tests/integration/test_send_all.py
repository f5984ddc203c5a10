"""`send_all` on the real broker: the records go out as whole batches per partition, yet
each lands on the partition `producer.send` puts its key on (keys published before and
after stay together), in the order given, every one of them acknowledged."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from servicekit.kafka import OutgoingRecord, ensure_topics, send_all
from servicekit.testing import read_topic, unique

pytestmark = pytest.mark.integration

KEYS = [f"customer-{n}" for n in range(40)]
RECORDS = 3000
PADDING = b"." * 400  # 3,000 records of ~0.5 KB: more than one 256 KiB batch per partition


def numbered(topic: str, n: int) -> OutgoingRecord:
    return OutgoingRecord(topic, KEYS[n % len(KEYS)], b"%06d" % n + PADDING, [("n", b"%d" % n)])


async def test_batched_records_land_on_their_keys_partition_in_order_all_acknowledged(
    bootstrap: str, producer: AIOKafkaProducer
) -> None:
    batched, one_by_one = unique("test.send-all"), unique("test.send-one")
    await ensure_topics(bootstrap, [batched, one_by_one])
    for key in KEYS:
        await producer.send_and_wait(one_by_one, b"", key=key.encode())

    acknowledgements = await (
        await send_all(producer, [numbered(batched, n) for n in range(RECORDS)])
    )

    assert 3 < len(acknowledgements) < 20, "a few whole batches per partition, not a record each"
    records = await read_topic(bootstrap, batched, at_least=RECORDS)
    assert len(records) == RECORDS, "each record once"
    placed_by_send = {
        r.key: r.partition for r in await read_topic(bootstrap, one_by_one, at_least=len(KEYS))
    }
    for key in KEYS:
        mine = [r for r in records if r.key == key.encode()]
        assert {r.partition for r in mine} == {placed_by_send[key.encode()]}
        assert [int(r.value[:6]) for r in mine] == list(range(KEYS.index(key), RECORDS, len(KEYS)))
    assert all(int(dict(r.headers)["n"]) == int(r.value[:6]) for r in records), "headers kept"
