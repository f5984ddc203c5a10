"""PORTAL_KAFKA_BOOTSTRAP names every node of a replicated cluster, comma-separated
(`deploy/local/platform start --brokers 3`); aiokafka takes a str as one address, so the
services' clients get the list (issue 13: every stream loop died on the 3-broker cluster)."""

from __future__ import annotations

from servicekit.kafka import servers


def test_a_cluster_bootstrap_is_every_node_and_a_single_broker_is_one() -> None:
    assert servers("127.0.0.1:35470,127.0.0.1:35480, 127.0.0.1:35490") == [
        "127.0.0.1:35470", "127.0.0.1:35480", "127.0.0.1:35490",
    ]  # fmt: skip
    assert servers("127.0.0.1:19092") == ["127.0.0.1:19092"]
