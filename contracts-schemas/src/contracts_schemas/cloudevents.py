"""CloudEvents 1.0 in Kafka binary content mode, plus W3C `traceparent`.

Attributes travel as `ce_*` headers, the JSON body is the event itself. See the
CloudEvents Kafka protocol binding, section 3.2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from contracts_schemas.base import Contract, Event, UpstreamMessage
from contracts_schemas.registry import REGISTRY

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
TRACEPARENT = "traceparent"

Headers = Sequence[tuple[str, bytes]]


class InvalidMessage(ValueError):
    """A message that can never be processed: it goes to the dead-letter topic with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    type: str
    source: str
    data: bytes
    time: str | None = None
    subject: str | None = None
    traceparent: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)

    def header_pairs(self) -> list[tuple[str, str]]:
        """The Kafka headers as text, in a fixed order."""
        pairs = [
            ("ce_specversion", SPEC_VERSION),
            ("ce_id", self.id),
            ("ce_type", self.type),
            ("ce_source", self.source),
            ("content-type", CONTENT_TYPE),
        ]
        if self.time is not None:
            pairs.append(("ce_time", self.time))
        if self.subject is not None:
            pairs.append(("ce_subject", self.subject))
        pairs.extend((f"ce_{k}", v) for k, v in sorted(self.extensions.items()))
        if self.traceparent is not None:
            pairs.append((TRACEPARENT, self.traceparent))
        return pairs

    def headers(self) -> list[tuple[str, bytes]]:
        return [(name, value.encode()) for name, value in self.header_pairs()]


def _identity(message: Contract) -> tuple[str, datetime, str | None]:
    if isinstance(message, Event):
        return str(message.event_id), message.occurred_at, message.aggregate_id
    if isinstance(message, UpstreamMessage):
        return message.message_id, message.occurred_at, message.policy_number
    raise TypeError(f"not a published contract: {type(message).__name__}")


def encode(message: Contract, source: str, traceparent: str | None = None) -> CloudEvent:
    message_id, occurred_at, subject = _identity(message)
    return CloudEvent(
        id=message_id,
        type=message.type_name(),
        source=source,
        data=message.model_dump_json().encode(),
        time=occurred_at.isoformat(),
        subject=subject,
        traceparent=traceparent,
    )


_RESERVED = {"specversion", "id", "type", "source", "time", "subject"}


def from_kafka(headers: Headers | None, value: bytes | None) -> CloudEvent:
    """Read the envelope; raises InvalidMessage when it is not a CloudEvent we accept."""
    attrs: dict[str, str] = {}
    traceparent = None
    for name, raw in headers or ():
        try:
            text = raw.decode() if raw is not None else ""
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"header {name} is not UTF-8") from exc
        if name.startswith("ce_"):
            attrs[name[3:]] = text
        elif name == TRACEPARENT:
            traceparent = text
    if attrs.get("specversion") != SPEC_VERSION:
        raise InvalidMessage(
            f"ce_specversion must be {SPEC_VERSION}, got {attrs.get('specversion')!r}"
        )
    missing = [a for a in ("id", "type", "source") if not attrs.get(a)]
    if missing:
        raise InvalidMessage(f"missing CloudEvents attributes: {', '.join(missing)}")
    if value is None:
        raise InvalidMessage("message has no body")
    return CloudEvent(
        id=attrs["id"],
        type=attrs["type"],
        source=attrs["source"],
        data=value,
        time=attrs.get("time"),
        subject=attrs.get("subject"),
        traceparent=traceparent,
        extensions={k: v for k, v in attrs.items() if k not in _RESERVED},
    )


def decode(cloud_event: CloudEvent) -> Contract:
    """The typed contract inside the envelope; raises InvalidMessage with the reason."""
    registration = REGISTRY.get(cloud_event.type)
    if registration is None:
        raise InvalidMessage(f"unknown event type {cloud_event.type!r}")
    try:
        message = registration.model.model_validate_json(cloud_event.data)
    except ValidationError as exc:
        raise InvalidMessage(f"schema violation in {cloud_event.type}: {_summary(exc)}") from exc
    message_id, _, _ = _identity(message)
    if message_id != cloud_event.id:
        raise InvalidMessage(f"ce_id {cloud_event.id!r} differs from the body's id {message_id!r}")
    return message


def _summary(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in error.errors()
    ]
    return "; ".join(parts[:5])
