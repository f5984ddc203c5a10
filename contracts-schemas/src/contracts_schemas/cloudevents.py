"""CloudEvents 1.0 in Kafka binary content mode, plus W3C `traceparent`.

Attributes travel as `ce_*` headers, the JSON body is the event itself. See the
CloudEvents Kafka protocol binding, section 3.2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple

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


_NO_EXTENSIONS: Mapping[str, str] = MappingProxyType({})


class CloudEvent(NamedTuple):
    """An envelope (a tuple: one is read per consumed event, and a frozen dataclass's
    `__init__` sets each of its eight fields through `object.__setattr__`)."""

    id: str
    type: str
    source: str
    data: bytes
    time: str | None = None
    subject: str | None = None
    traceparent: str | None = None
    extensions: Mapping[str, str] = _NO_EXTENSIONS

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
        if self.extensions:
            return [(name, value.encode()) for name, value in self.header_pairs()]
        return kafka_headers(
            self.id, self.type, self.source, self.time, self.subject, self.traceparent
        )


_SPEC_VERSION_HEADER = ("ce_specversion", SPEC_VERSION.encode())
_CONTENT_TYPE_HEADER = ("content-type", CONTENT_TYPE.encode())


def kafka_headers(
    id: str,
    type: str,
    source: str,
    time: str | None = None,
    subject: str | None = None,
    traceparent: str | None = None,
) -> list[tuple[str, bytes]]:
    """The Kafka headers of an envelope without extensions, in `header_pairs`' order."""
    return kafka_headers_of_bytes(
        id.encode(), type.encode(), source.encode(),
        None if time is None else time.encode(),
        None if subject is None else subject.encode(),
        None if traceparent is None else traceparent.encode(),
    )  # fmt: skip


def kafka_headers_of_bytes(
    id: bytes,
    type: bytes,
    source: bytes,
    time: bytes | None,
    subject: bytes | None,
    traceparent: bytes | None,
) -> list[tuple[str, bytes]]:
    """`kafka_headers` from values already encoded: the outbox relay reads them as bytes
    and builds these once per published event, decoding nothing."""
    headers = [
        _SPEC_VERSION_HEADER,
        ("ce_id", id),
        ("ce_type", type),
        ("ce_source", source),
        _CONTENT_TYPE_HEADER,
    ]
    if time is not None:
        headers.append(("ce_time", time))
    if subject is not None:
        headers.append(("ce_subject", subject))
    if traceparent is not None:
        headers.append((TRACEPARENT, traceparent))
    return headers


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


def from_kafka(headers: Headers | None, value: bytes | None) -> CloudEvent:
    """Read the envelope; raises InvalidMessage when it is not a CloudEvent we accept.

    Every header must be UTF-8 text (or have no value), whatever its name. Once per
    consumed event, so one pass over the headers and no dictionary unless the envelope
    has extensions."""
    specversion = id = type = source = time = subject = traceparent = None
    extensions: dict[str, str] | None = None
    for name, raw in headers or ():
        try:
            text = raw.decode() if raw is not None else ""
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"header {name} is not UTF-8") from exc
        if name == "ce_id":
            id = text
        elif name == "ce_type":
            type = text
        elif name == "ce_source":
            source = text
        elif name == "ce_time":
            time = text
        elif name == "ce_subject":
            subject = text
        elif name == "ce_specversion":
            specversion = text
        elif name == TRACEPARENT:
            traceparent = text
        elif name.startswith("ce_"):
            if extensions is None:
                extensions = {}
            extensions[name[3:]] = text
    if specversion != SPEC_VERSION:
        raise InvalidMessage(f"ce_specversion must be {SPEC_VERSION}, got {specversion!r}")
    if not id or not type or not source:
        missing = [a for a, v in (("id", id), ("type", type), ("source", source)) if not v]
        raise InvalidMessage(f"missing CloudEvents attributes: {', '.join(missing)}")
    if value is None:
        raise InvalidMessage("message has no body")
    return CloudEvent(
        id, type, source, value, time, subject, traceparent, extensions or _NO_EXTENSIONS
    )


def decode(cloud_event: CloudEvent) -> Contract:
    """The typed contract inside the envelope; raises InvalidMessage with the reason."""
    registration = REGISTRY.get(cloud_event.type)
    if registration is None:
        raise InvalidMessage(f"unknown event type {cloud_event.type!r}")
    try:
        message = _validate_json(registration.model)(cloud_event.data)
    except ValidationError as exc:
        raise InvalidMessage(f"schema violation in {cloud_event.type}: {_summary(exc)}") from exc
    message_id = _message_id(message)
    if message_id != cloud_event.id:
        raise InvalidMessage(f"ce_id {cloud_event.id!r} differs from the body's id {message_id!r}")
    return message


_VALIDATE_JSON: dict[type, Callable[[bytes], Contract]] = {}


def _validate_json(model: type[Contract]) -> Callable[[bytes], Contract]:
    """`model.model_validate_json`, straight to its schema validator once the model is
    complete (once per consumed event: the classmethod's own checks cost ~20% of a small
    event's validation)."""
    validate = _VALIDATE_JSON.get(model)
    if validate is None:
        if not model.__pydantic_complete__:
            return model.model_validate_json  # still to be built: pydantic builds it
        validate = _VALIDATE_JSON[model] = model.__pydantic_validator__.validate_json
    return validate


_ID_FIELD: dict[type, str] = {}


def _message_id(message: Contract) -> str:
    """`_identity(message)[0]`, with the class's id field looked up once per class (an
    isinstance check of a pydantic model class is an ABC check: slow, once per event)."""
    field_name = _ID_FIELD.get(message.__class__)
    if field_name is None:
        _identity(message)  # neither an Event nor an UpstreamMessage: TypeError
        field_name = "event_id" if isinstance(message, Event) else "message_id"
        _ID_FIELD[message.__class__] = field_name
    return str(getattr(message, field_name))


def _summary(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in error.errors()
    ]
    return "; ".join(parts[:5])
