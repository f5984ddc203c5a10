"""Typed event contracts of the customer portal."""

from contracts_schemas.base import Contract, Event, UpstreamMessage
from contracts_schemas.registry import REGISTRY, partition_key, topic_of

__all__ = ["REGISTRY", "Contract", "Event", "UpstreamMessage", "partition_key", "topic_of"]
