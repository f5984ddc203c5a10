"""KAFKA-1/KAFKA-2 on the real broker: with creation forbidden, `ensure_topics` creates
nothing and names what is missing; with it allowed, missing topics get the platform's
partition count and the cluster's default replication factor (tests/deploy's replicated
cluster shows 3 there)."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from servicekit.kafka import MissingTopicsError, ensure_topics
from servicekit.testing import unique

pytestmark = pytest.mark.integration


async def _described(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """Each existing topic's replica count per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t in existing]
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    return {d["topic"]: [len(p["replicas"]) for p in d["partitions"]] for d in described}


async def _default_replication(bootstrap: str) -> int:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        brokers = (await admin._client.fetch_all_metadata()).brokers()
        resource = ConfigResource(ConfigResourceType.BROKER, str(min(b.nodeId for b in brokers)))
        [response] = await admin.describe_configs([resource])
    finally:
        await admin.close()
    entries = response.to_object()["resources"][0]["config_entries"]
    name = "default.replication.factor"
    return next(int(e["config_value"]) for e in entries if e["config_names"] == name)


async def test_kafka_1_without_permission_missing_topics_are_named_and_not_created(
    bootstrap: str,
) -> None:
    present, absent_a, absent_b = unique("kt-present"), unique("kt-absent"), unique("kt-absent")
    await ensure_topics(bootstrap, [present])

    with pytest.raises(MissingTopicsError) as raised:
        await ensure_topics(bootstrap, [present, absent_a, absent_b], create=False)

    assert raised.value.missing == (absent_a, absent_b)
    assert set(await _described(bootstrap, [present, absent_a, absent_b])) == {present}


async def test_kafka_1_without_permission_existing_topics_pass(bootstrap: str) -> None:
    topic = unique("kt-existing")
    await ensure_topics(bootstrap, [topic])

    await ensure_topics(bootstrap, [topic], create=False)

    assert set(await _described(bootstrap, [topic])) == {topic}


async def test_kafka_2_created_topics_take_the_clusters_default_replication(
    bootstrap: str,
) -> None:
    topic = unique("kt-default-rf")

    await ensure_topics(bootstrap, [topic], create=True)

    default = await _default_replication(bootstrap)
    assert (await _described(bootstrap, [topic]))[topic] == [default, default, default]
