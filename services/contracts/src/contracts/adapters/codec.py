"""Stored events back to the contracts models."""

from __future__ import annotations

from contracts_schemas import REGISTRY
from contracts_schemas.contracts import PolicyEvent
from servicekit.unit_of_work import RecordedEvent


def policy_event(recorded: RecordedEvent) -> PolicyEvent:
    event = REGISTRY[recorded.event_type].model.model_validate(recorded.payload)
    assert isinstance(event, PolicyEvent)
    return event


def stored_policy_event(event_type: str, payload: str) -> PolicyEvent:
    """An event from its stored type and JSON text, validated straight from the text."""
    event = REGISTRY[event_type].model.model_validate_json(payload)
    assert isinstance(event, PolicyEvent)
    return event
