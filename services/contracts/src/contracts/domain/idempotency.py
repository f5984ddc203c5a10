"""What makes two requests "the same request" (CT-1, CT-4; README, "Duplicates").

Every input that may arrive twice has a key: an upstream message its (source system,
message id), a customer's move its `Idempotency-Key`, a change of bank details its mTAN
id - the customer's keys scoped by customer and policy. The first input with a key is
recorded with the fingerprint of its canonical body (the parsed model as sorted JSON,
so the order of fields, whitespace and unknown fields do not matter) and the ids of the
events it recorded. Later inputs with that key are judged against the record:

- the same fingerprint: the same request again - no second effect, the first answer;
- another fingerprint: the key was used for a different request - refused (a reused
  message id on HTTP 422 / dead-lettered on Kafka; a reused Idempotency-Key 422, as in
  the IETF Idempotency-Key draft).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from contracts_schemas.base import UpstreamMessage

from contracts.domain.errors import CommandRejected, ReasonCode, UpstreamRejected


@dataclass(frozen=True)
class RequestKey:
    scope: str
    key: str


@dataclass(frozen=True)
class RecordedRequest:
    """A request recorded before: its body's fingerprint and the events it recorded."""

    fingerprint: str
    event_ids: tuple[UUID, ...]


#: The canonical JSON: `json.dumps(body, sort_keys=True, separators=(",", ":"),
#: ensure_ascii=False)` - the very encoder `json.dumps` builds for these arguments on
#: each call, built once (recorded fingerprints depend on this text: never change it).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a request body."""
    return hashlib.sha256(_CANONICAL.encode(body).encode()).hexdigest()


def upstream_key(message: UpstreamMessage) -> RequestKey:
    """CT-1: one rule on Kafka and HTTP - (source system, message id)."""
    return RequestKey(f"upstream:{message.source_system}", message.message_id)


#: Optional fields added to an upstream message within its version: left out of the
#: fingerprint while empty, so a message recorded before they existed keeps its
#: fingerprint (redelivered, it is still "the same message").
ADDED_OPTIONAL_FIELDS = frozenset({"policyholders"})


def upstream_fingerprint(message: UpstreamMessage) -> str:
    body = message.model_dump(mode="json")
    for name in ADDED_OPTIONAL_FIELDS.intersection(body):
        if not body[name]:
            del body[name]
    body.setdefault("type", message.type_name())  # as {"type": ..., **body}: a field wins
    return fingerprint(body)


def client_key(kind: str, customer_id: str, policy_id: str, key: str) -> RequestKey:
    """A key chosen by a customer's client, scoped by customer and target policy."""
    return RequestKey(f"{kind}:{customer_id}:{policy_id}", key)


def message_id_reused(message: UpstreamMessage) -> UpstreamRejected:
    return UpstreamRejected(
        ReasonCode.MESSAGE_ID_REUSED,
        f"message id already used for a different message: {message.source_system} sent "
        f"{message.message_id!r} before with another content",
    )


def idempotency_key_reused() -> CommandRejected:
    return CommandRejected(
        ReasonCode.IDEMPOTENCY_KEY_REUSED,
        "Dieser Idempotency-Key wurde bereits für eine andere Anfrage verwendet. Bitte "
        "senden Sie eine neue Anfrage mit einem neuen Schlüssel.",
    )


def is_replay(
    recorded: RecordedRequest | None, fingerprint: str, reused: Exception
) -> Sequence[UUID] | None:
    """The first request's event ids if this is the same request again; None if the key
    is new; raises `reused` if the key was used for a different request."""
    if recorded is None:
        return None
    if recorded.fingerprint != fingerprint:
        raise reused
    return recorded.event_ids
