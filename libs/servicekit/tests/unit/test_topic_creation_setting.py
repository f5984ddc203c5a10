"""KAFKA-1: whether a service may create the topics it lacks is a setting,
PORTAL_KAFKA_CREATE_TOPICS: true by default (local, dev, tests), false where an operator
owns the topics (the Helm chart: Strimzi's KafkaTopic resources). When false, a missing
topic is an error naming every missing one."""

from __future__ import annotations

import pytest
from servicekit.kafka import CREATE_TOPICS_VARIABLE, MissingTopicsError
from servicekit.settings import ServiceSettings


def allowed(monkeypatch: pytest.MonkeyPatch, value: str | None) -> bool:
    if value is not None:
        monkeypatch.setenv(CREATE_TOPICS_VARIABLE, value)
    return ServiceSettings().kafka_create_topics


def test_kafka_1_creation_is_allowed_when_the_setting_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CREATE_TOPICS_VARIABLE, raising=False)
    assert allowed(monkeypatch, None) is True


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "off"])
def test_kafka_1_false_forbids_creation(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert allowed(monkeypatch, value) is False


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on"])
def test_kafka_1_true_allows_creation(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert allowed(monkeypatch, value) is True


def test_kafka_1_an_unreadable_value_is_refused_not_guessed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="kafka_create_topics"):
        allowed(monkeypatch, "sometimes")


def test_kafka_1_the_error_names_every_missing_topic_and_the_setting() -> None:
    error = MissingTopicsError(["portal.claims.claim", "portal.dlq.loyalty"])

    assert error.missing == ("portal.claims.claim", "portal.dlq.loyalty")
    assert "portal.claims.claim, portal.dlq.loyalty" in str(error)
    assert CREATE_TOPICS_VARIABLE in str(error)
