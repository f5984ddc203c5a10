"""What a service consumes and publishes on Kafka, as an AsyncAPI 3.0 document.

A service says ONCE, in a `StreamSpec`, which consumer groups read which topics and which
topics it publishes to; its running `EventStream` subscribes with the same constants
(`mismatches(stream, spec)` tells when the two differ). Everything else comes from
`contracts_schemas`:

- a channel per topic (its production name: the test-run topic prefix is left out),
  carrying every registered contract of that topic as a message whose payload is the
  model's JSON Schema (the same as `contracts-schemas/schemas/`, draft 2020-12);
- the CloudEvents binary-mode headers (`ce_*`, `content-type`, `traceparent`) and the
  record key (the partition key) of every message;
- per consumer group its dead-letter channel with the `x-dlq-*` headers.

The document is built from the spec alone, without Kafka or PostgreSQL, so that it can be
committed (`contracts-schemas/asyncapi/<service>.json`, written and checked by
`python -m servicekit.asyncapi_cli`) and served by the running service (`mount`).

FastStream's own AsyncAPI generator is not used: it documents a batch subscriber's payload
as its handler's parameters, knows neither headers nor record keys, and names the server
after the broker address of the machine that generates it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts_schemas.base import Contract, Event, UpstreamMessage
from contracts_schemas.cloudevents import CONTENT_TYPE, SPEC_VERSION, TRACEPARENT
from contracts_schemas.export import schema_of
from contracts_schemas.registry import REGISTRY, Registration
from contracts_schemas.topics import dead_letter_topic
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from servicekit.stream import EventStream

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
PAYLOAD_FORMAT = "application/schema+json;version=draft-2020-12"
CLOUD_EVENTS_HEADERS = "CloudEventsHeaders"
DEAD_LETTER = "DeadLetter"

Document = dict[str, Any]


@dataclass(frozen=True)
class StreamSpec:
    """What one service consumes (consumer group -> topics) and publishes (topics).

    Topic and group names are the production ones (unprefixed), as given to
    `EventStream.subscriber(group, *topics)`.
    """

    service: str
    consumes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    publishes: Sequence[str] = ()
    version: str = "1.0.0"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.all_topics()) - set(_topics_of_registry()))
        if unknown:
            raise ValueError(f"{self.service}: no contract is registered on {unknown}")

    def topics(self, group: str) -> tuple[str, ...]:
        """The topics consumer group `group` reads: `stream.subscriber(g, *spec.topics(g))`."""
        return tuple(self.consumes[group])

    def all_topics(self) -> list[str]:
        """Every topic the service reads or writes, once each, sorted."""
        named = [t for group in self.consumes.values() for t in group] + list(self.publishes)
        return sorted(set(named))

    def groups(self) -> list[tuple[str, list[str]]]:
        """Each consumer group with its topics, sorted: the document does not depend on the
        order in which a service happens to list them."""
        return sorted((group, sorted(set(topics))) for group, topics in self.consumes.items())


def document(spec: StreamSpec) -> Document:
    """The AsyncAPI 3.0 document of `spec` (deterministic: the same spec, the same text)."""
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": f"urn:de.portal:service:{spec.service}",
        "info": {
            "title": f"{spec.service} events",
            "version": spec.version,
            "description": _info_description(spec),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": _channels(spec),
        "operations": _operations(spec),
        "components": _components(spec),
    }


def render(doc: Document) -> str:
    """The committed text of a document."""
    return json.dumps(doc, indent=2) + "\n"


# --- channels and operations ---------------------------------------------------------------


def _info_description(spec: StreamSpec) -> str:
    return (
        f"The Kafka topics the {spec.service} service consumes and publishes.\n\n"
        "Every message is a CloudEvent 1.0 in Kafka binary content mode: the attributes "
        "travel as `ce_*` headers, the body is the event as JSON (UTF-8). One topic per "
        "producing aggregate; the record key keeps one aggregate's messages in order on one "
        "partition, and nothing is ordered across topics. Channel addresses and consumer "
        "groups are the production names; a test environment may prefix every topic and "
        "group (`PORTAL_TOPIC_PREFIX`)."
    )


def _channels(spec: StreamSpec) -> Document:
    channels: Document = {}
    for topic in spec.all_topics():
        channels[topic] = {
            "address": topic,
            "title": topic,
            "description": _topic_description(topic),
            "messages": {t: {"$ref": _pointer("components", "messages", t)} for t in _on(topic)},
            "bindings": _kafka({"topic": topic}),
        }
    for group, _ in spec.groups():
        address = dead_letter_topic(group)
        channels[address] = {
            "address": address,
            "title": address,
            "description": (
                f"Dead letters of consumer group `{group}`: each record it could not decode "
                "or apply, with its original key, value and headers and the reason in "
                "`x-dlq-*` headers. Operators replay from here once the cause is mended."
            ),
            "messages": {DEAD_LETTER: {"$ref": _pointer("components", "messages", DEAD_LETTER)}},
            "bindings": _kafka({"topic": address}),
        }
    return channels


def _topic_description(topic: str) -> str:
    types = ", ".join(f"`{t}`" for t in _on(topic))
    return f"Carries {types}. The record key keeps one aggregate's messages in order."


def _operations(spec: StreamSpec) -> Document:
    operations: Document = {}
    for group, group_topics in spec.groups():
        for topic in group_topics:
            operations[f"{group}.receive.{topic}"] = _receive(group, topic)
        operations[f"{group}.dead-letter"] = _dead_letter_operation(group)
    for topic in sorted(set(spec.publishes)):
        operations[f"{spec.service}.send.{topic}"] = {
            "action": "send",
            "title": f"{spec.service} publishes to {topic}",
            "description": (
                "Published from the service's outbox by one idempotent producer (acks=all) "
                "after the transaction that recorded the events has committed: at least once, "
                "in order per aggregate. Consumers deduplicate by `ce_source` + `ce_id`."
            ),
            **_channel_and_messages(topic),
        }
    return operations


def _receive(group: str, topic: str) -> Document:
    return {
        "action": "receive",
        "title": f"{group} consumes {topic}",
        "description": (
            f"Consumer group `{group}` (static membership: `group.instance.id` is "
            f"`{group}-<instance id>`) reads batches, from the earliest offset when new, "
            "`read_committed`. Each message's effect and its inbox row (keyed by `ce_source` "
            "+ `ce_id`, so a redelivered message applies once) commit in one transaction; "
            "the offsets are committed after it. A message that cannot be decoded, fails its "
            f"schema or is refused goes to `{dead_letter_topic(group)}`."
        ),
        **_channel_and_messages(topic),
        "bindings": _kafka({"groupId": {"type": "string", "enum": [group]}}),
    }


def _dead_letter_operation(group: str) -> Document:
    address = dead_letter_topic(group)
    return {
        "action": "send",
        "title": f"{group} dead-letters to {address}",
        "description": f"What consumer group `{group}` cannot process, with the reason.",
        "channel": {"$ref": _pointer("channels", address)},
        "messages": [{"$ref": _pointer("channels", address, "messages", DEAD_LETTER)}],
    }


def _channel_and_messages(topic: str) -> Document:
    return {
        "channel": {"$ref": _pointer("channels", topic)},
        "messages": [{"$ref": _pointer("channels", topic, "messages", t)} for t in _on(topic)],
    }


# --- messages and schemas ------------------------------------------------------------------


def _components(spec: StreamSpec) -> Document:
    type_names = [t for topic in spec.all_topics() for t in _on(topic)]
    messages = {t: _message(REGISTRY[t]) for t in type_names}
    schemas = {t: _payload(t) for t in type_names}
    schemas[CLOUD_EVENTS_HEADERS] = _cloud_events_headers()
    if spec.consumes:
        messages[DEAD_LETTER] = _dead_letter_message()
    return {"messages": messages, "schemas": schemas}


def _message(registration: Registration) -> Document:
    model = registration.model
    type_name = model.type_name()
    key_field = partition_key_field(registration)
    id_field = id_field_of(model)
    message: Document = {
        "name": type_name,
        "title": model.__name__,
        "summary": f"`{type_name}` on `{registration.topic}`, keyed by `{key_field}`.",
        "contentType": CONTENT_TYPE,
        "headers": {
            "allOf": [
                {"$ref": _pointer("components", "schemas", CLOUD_EVENTS_HEADERS)},
                {
                    "properties": {
                        "ce_type": {"const": type_name},
                        "ce_id": {"description": f"The body's `{id_field}`."},
                        "ce_subject": {"description": f"The body's `{key_field}`."},
                    }
                },
            ]
        },
        "payload": {"$ref": _pointer("components", "schemas", type_name)},
        "correlationId": {"location": "$message.header#/ce_id"},
        "bindings": _kafka({"key": _key_schema(key_field)}),
        "x-partition-key": key_field,
    }
    if own_doc := model.__dict__.get("__doc__"):
        message["description"] = own_doc.strip()
    return message


def _key_schema(key_field: str) -> Document:
    return {
        "type": "string",
        "description": f"The body's `{key_field}` (UTF-8): the partition key.",
    }


def _payload(type_name: str) -> Document:
    schema = schema_of(type_name)
    schema.pop("$id", None)  # embedded: its `$defs` are addressed from the document's root
    base = _pointer("components", "schemas", type_name, "schema")
    return {"schemaFormat": PAYLOAD_FORMAT, "schema": _rebase_refs(schema, base)}


def _rebase_refs(node: Any, base: str) -> Any:
    if isinstance(node, dict):
        return {
            k: base + v[1:] if k == "$ref" and isinstance(v, str) and v.startswith("#/")
            else _rebase_refs(v, base)
            for k, v in node.items()
        }  # fmt: skip
    if isinstance(node, list):
        return [_rebase_refs(item, base) for item in node]
    return node


def _cloud_events_headers() -> Document:
    def text(description: str, **more: Any) -> Document:
        return {"type": "string", "description": description, **more}

    return {
        "type": "object",
        "description": (
            "CloudEvents 1.0, Kafka protocol binding, binary content mode (section 3.2), "
            "plus W3C trace context. Header values are UTF-8 text."
        ),
        "required": ["ce_specversion", "ce_id", "ce_type", "ce_source"],
        "properties": {
            "ce_specversion": text("CloudEvents version.", const=SPEC_VERSION),
            "ce_id": text(
                "The message's id; with `ce_source` the key consumers deduplicate by.",
                minLength=1,
            ),
            "ce_type": text("The contract's type name; selects the payload schema.", minLength=1),
            "ce_source": text("The producing system, e.g. `/portal/contracts`.", minLength=1),
            "ce_time": text("When it occurred: the body's `occurred_at`.", format="date-time"),
            "ce_subject": text("The aggregate the message is about: the record key."),
            "content-type": text("The body's media type.", const=CONTENT_TYPE),
            TRACEPARENT: text(
                "W3C trace context of the producing request, when there was one.",
                pattern="^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            ),
        },
        "additionalProperties": {
            "type": "string",
            "description": "Further `ce_*` headers are CloudEvents extension attributes.",
        },
    }


DEAD_LETTER_HEADERS: dict[str, str] = {
    "x-dlq-reason": "Why the record could not be processed.",
    "x-dlq-consumer": "The consumer group that gave up on it.",
    "x-dlq-original-topic": "The topic it was read from.",
    "x-dlq-original-partition": "Its partition there (decimal).",
    "x-dlq-original-offset": "Its offset there (decimal).",
    "x-dlq-at": "When it was dead-lettered (ISO 8601, UTC).",
    "x-dlq-body-omitted": (
        "Present when the body was too large to forward: `<n> bytes, sha256 <hex>` of the "
        "original value, which is then empty here."
    ),
}
ALWAYS_SET_DEAD_LETTER_HEADERS = [h for h in DEAD_LETTER_HEADERS if h != "x-dlq-body-omitted"]


def _dead_letter_message() -> Document:
    headers = {
        name: {"type": "string", "description": d} for name, d in DEAD_LETTER_HEADERS.items()
    }
    return {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A record a consumer group could not process, unchanged, with the reason.",
        "description": (
            "Key and value are the original record's, byte for byte (the value may be "
            "anything, since undecodable records end here too); so are its headers, except "
            "earlier `x-dlq-*` headers, which are replaced."
        ),
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": ALWAYS_SET_DEAD_LETTER_HEADERS,
            "properties": headers,
            "additionalProperties": {"type": "string"},
        },
        "payload": {"description": "The original record's value, unchanged."},
        "bindings": _kafka({"key": {"type": "string", "description": "The original key."}}),
    }


# --- what the registry knows ---------------------------------------------------------------


def _topics_of_registry() -> list[str]:
    return list(dict.fromkeys(r.topic for r in REGISTRY.values()))


def _on(topic: str) -> list[str]:
    """The type names of every contract registered on `topic`, in registry order."""
    return [name for name, r in REGISTRY.items() if r.topic == topic]


def partition_key_field(registration: Registration) -> str:
    """The body field the registry keys this contract's records by, found by asking its
    key function about a model whose every field holds its own name."""
    model = registration.model
    probe = model.model_construct(None, **{name: name for name in model.model_fields})
    key = registration.key(probe)
    if key not in model.model_fields:
        raise ValueError(f"{model.type_name()} is not keyed by one of its fields")
    return key


def id_field_of(model: type[Contract]) -> str:
    """The body field that is the message's CloudEvents `id`."""
    if issubclass(model, Event):
        return "event_id"
    if issubclass(model, UpstreamMessage):
        return "message_id"
    raise TypeError(f"not a published contract: {model.__name__}")


def _kafka(binding: Document) -> Document:
    return {"kafka": {**binding, "bindingVersion": KAFKA_BINDING_VERSION}}


def _pointer(*parts: str) -> str:
    """A JSON pointer into the document (RFC 6901: `~` and `/` escaped)."""
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


# --- the running service -------------------------------------------------------------------


def mismatches(stream: EventStream[Any], spec: StreamSpec) -> list[str]:
    """How the stream's subscriptions differ from what `spec` documents (empty: they agree)."""
    prefix = stream.topic("")
    subscribed = {
        sub.group_id.removeprefix(prefix): sorted(
            t.removeprefix(prefix) for t in sub.topic_names_for_subscribe
        )
        for sub in _subscribers(stream)
    }
    documented = dict(spec.groups())
    return [
        f"group {g}: subscribes {subscribed.get(g, [])}, documented {documented.get(g, [])}"
        for g in sorted(subscribed.keys() | documented.keys())
        if subscribed.get(g) != documented.get(g)
    ]


def _subscribers(stream: EventStream[Any]) -> list[Any]:
    """The broker's Kafka subscribers (their `group_id` and topics are Kafka-specific)."""
    return list(stream.broker.subscribers)


def mount(app: FastAPI, doc: Document, path: str = "/asyncapi") -> None:
    """Serve `doc` at `<path>.json` and a readable page at `path` (neither in OpenAPI).

    The page is self-contained: FastStream's renderer loads its JavaScript and styles from
    a CDN (unpkg, jsDelivr), which this platform's machines cannot reach."""
    page = render_html(doc, json_url=f"{path}.json")

    async def asyncapi_json() -> JSONResponse:
        return JSONResponse(doc)

    async def asyncapi_page() -> HTMLResponse:
        return HTMLResponse(page)

    app.add_api_route(f"{path}.json", asyncapi_json, methods=["GET"], include_in_schema=False)
    app.add_api_route(path, asyncapi_page, methods=["GET"], include_in_schema=False)


# --- the page ------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;"
    "text-align:left;vertical-align:top}pre{background:#f6f6f6;padding:.5em;overflow:auto}"
)


def render_html(doc: Document, json_url: str = "/asyncapi.json") -> str:
    """A page without scripts: the operations, then every message with headers and schema."""
    e = html.escape
    info = doc["info"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(info['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(info['title'])} <small>{e(info['version'])}</small></h1>",
        f"<p>AsyncAPI {e(doc['asyncapi'])}: <a href='{e(json_url)}'>{e(json_url)}</a></p>",
        f"<p>{e(info.get('description', ''))}</p>",
        "<h2>Operations</h2><table><tr><th>action</th><th>channel</th><th>messages</th>"
        "<th>description</th></tr>",
        *_operation_rows(doc),
        "</table><h2>Messages</h2>",
        *_message_sections(doc),
        "</body></html>\n",
    ]
    return "".join(parts)


def _operation_rows(doc: Document) -> Iterator[str]:
    e = html.escape
    for operation in doc["operations"].values():
        channel = _resolve(doc, operation["channel"]["$ref"])
        names = [_resolve(doc, m["$ref"])["$ref"].rsplit("/", 1)[1] for m in operation["messages"]]
        links = "<br>".join(f"<a href='#{e(n)}'>{e(n)}</a>" for n in names)
        yield (
            f"<tr><td>{e(operation['action'])}</td><td><code>{e(channel['address'])}</code></td>"
            f"<td>{links}</td><td>{e(operation.get('description', ''))}</td></tr>"
        )


def _message_sections(doc: Document) -> Iterator[str]:
    e = html.escape
    for name, message in doc["components"]["messages"].items():
        headers = json.dumps(message["headers"], indent=2)
        payload = json.dumps(_resolve_payload(doc, message["payload"]), indent=2)
        key = json.dumps(message["bindings"]["kafka"]["key"], indent=2)
        yield (
            f"<h3 id='{e(name)}'>{e(name)}</h3><p>{e(message.get('summary', ''))}</p>"
            f"<p>{e(message.get('description', ''))}</p>"
            f"<details><summary>key</summary><pre>{e(key)}</pre></details>"
            f"<details><summary>headers</summary><pre>{e(headers)}</pre></details>"
            f"<details><summary>payload</summary><pre>{e(payload)}</pre></details>"
        )


def _resolve_payload(doc: Document, payload: Document) -> Any:
    return _resolve(doc, payload["$ref"]) if "$ref" in payload else payload


def _resolve(doc: Document, ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node
