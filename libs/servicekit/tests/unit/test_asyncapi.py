"""The AsyncAPI documents: what a service consumes and publishes, from its `StreamSpec`."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import jsonschema_rs
import pytest
from aiokafka import ConsumerRecord
from contracts_schemas import topics
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from contracts_schemas.common import Carrier, ProductLine
from contracts_schemas.loyalty import CustomerEnrolled
from contracts_schemas.registry import REGISTRY, partition_key, registration_of
from contracts_schemas.upstream import PolicyIssuedUpstream
from fastapi import FastAPI
from servicekit.asyncapi import (
    ALWAYS_SET_DEAD_LETTER_HEADERS,
    CLOUD_EVENTS_HEADERS,
    DEAD_LETTER_HEADERS,
    Document,
    StreamSpec,
    document,
    id_field_of,
    mismatches,
    mount,
    partition_key_field,
    render,
)
from servicekit.asyncapi_cli import ASYNCAPI_DIR
from servicekit.memory import InMemoryUnitOfWork, memory_transactions
from servicekit.settings import ServiceSettings
from servicekit.stream import DEAD_LETTER_MAX_BODY, DeadLetter, EventStream, dead_letter_record

GROUP = "fake.facts"
COMMITTED = sorted(ASYNCAPI_DIR.glob("*.json"))
SPEC = StreamSpec(
    "fake",
    consumes={GROUP: (topics.CONTRACTS_POLICY, topics.UPSTREAM_CONTRACTS)},
    publishes=(topics.LOYALTY_ACCOUNT,),
)


# --- a structural check of AsyncAPI 3.0 (no AsyncAPI schema validator is installed) --------


def structural_problems(doc: Document) -> list[str]:
    """What makes `doc` not an AsyncAPI 3.0 document of the shape the spec requires."""
    problems = []
    if doc.get("asyncapi") != "3.0.0":
        problems.append("asyncapi must be 3.0.0")
    info = doc.get("info", {})
    problems += [f"info.{k} missing" for k in ("title", "version") if not info.get(k)]
    for name, channel in doc.get("channels", {}).items():
        problems += _channel_problems(doc, name, channel)
    for name, operation in doc.get("operations", {}).items():
        problems += _operation_problems(doc, name, operation)
    for name, message in doc.get("components", {}).get("messages", {}).items():
        problems += _message_problems(doc, name, message)
    problems += [f"unresolvable $ref {ref}" for ref in refs(doc) if not _resolves(doc, ref)]
    return problems


def _channel_problems(doc: Document, name: str, channel: Document) -> list[str]:
    problems = [] if channel.get("address") else [f"channel {name}: no address"]
    if not channel.get("messages"):
        problems.append(f"channel {name}: no messages")
    return problems


def _operation_problems(doc: Document, name: str, operation: Document) -> list[str]:
    problems = []
    if operation.get("action") not in ("send", "receive"):
        problems.append(f"operation {name}: action must be send or receive")
    channel_ref = operation.get("channel", {}).get("$ref", "")
    if not channel_ref.startswith("#/channels/"):
        problems.append(f"operation {name}: channel must reference #/channels/...")
    for message in operation.get("messages", []):
        if not message.get("$ref", "").startswith(channel_ref + "/messages/"):
            problems.append(f"operation {name}: message not of its channel: {message}")
    return problems


def _message_problems(doc: Document, name: str, message: Document) -> list[str]:
    payload: Document = message["payload"]
    if "$ref" in payload:
        payload = resolve(doc, payload["$ref"])
    schema: Document = payload.get("schema", payload)  # a multi-format schema or a schema
    problems = [] if jsonschema_rs.meta.is_valid(schema) else [f"{name}: payload not a schema"]
    headers = message.get("headers", {})
    if not jsonschema_rs.meta.is_valid(headers):
        problems.append(f"{name}: headers not a schema")
    return problems


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(doc: Document, ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _resolves(doc: Document, ref: str) -> bool:
    try:
        resolve(doc, ref)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def payload_validator(doc: Document, type_name: str) -> jsonschema_rs.Validator:
    """Validates a body against the document's payload of `type_name`, refs and all."""
    root = {"$ref": f"#/components/schemas/{type_name}/schema", "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(root)


def headers_validator(doc: Document, type_name: str) -> jsonschema_rs.Validator:
    root = {
        "$ref": f"#/components/messages/{type_name}/headers",
        "components": doc["components"],
    }
    return jsonschema_rs.Draft202012Validator(root)


# --- samples -------------------------------------------------------------------------------


def enrolled() -> CustomerEnrolled:
    return CustomerEnrolled(
        event_id=uuid4(),
        aggregate_id="loyalty-account-1",
        aggregate_version=1,
        occurred_at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        customer_id="customer-1",
    )


def policy_issued_upstream() -> PolicyIssuedUpstream:
    return PolicyIssuedUpstream(
        message_id="pas-42",
        source_system="pas",
        occurred_at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        policy_number="P-1000",
        product_line=ProductLine.MOTOR,
        carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG,
        policyholder_ids=("customer-1",),
        start_date=date(2025, 4, 1),
    )


def body(message: Contract) -> Any:
    return json.loads(message.model_dump_json())


def header_dict(message: Contract) -> dict[str, str]:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    return dict(encode(message, "/portal/test", traceparent).header_pairs())


def test_the_structural_check_finds_what_an_asyncapi_3_document_must_not_lack() -> None:
    doc = document(SPEC)
    del doc["info"]["version"]
    doc["channels"][topics.CONTRACTS_POLICY].pop("address")
    doc["operations"][f"{GROUP}.dead-letter"]["action"] = "publish"
    doc["operations"][f"{GROUP}.dead-letter"]["messages"][0]["$ref"] += "-gone"
    assert structural_problems(doc) == [
        "info.version missing",
        f"channel {topics.CONTRACTS_POLICY}: no address",
        f"operation {GROUP}.dead-letter: action must be send or receive",
        "unresolvable $ref #/channels/portal.dlq.fake.facts/messages/DeadLetter-gone",
    ]


# --- the document --------------------------------------------------------------------------


def test_the_document_has_the_required_asyncapi_3_structure() -> None:
    assert structural_problems(document(SPEC)) == []


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_every_committed_document_has_the_required_asyncapi_3_structure(path: Path) -> None:
    assert structural_problems(json.loads(path.read_text())) == []


def test_every_service_that_consumes_or_publishes_has_a_committed_document() -> None:
    repository = Path(__file__).resolve().parents[4]
    streaming = sorted(
        stream.parents[1].name
        for stream in repository.glob("services/*/src/*/entrypoints/stream.py")
    )
    assert [p.stem for p in COMMITTED] == streaming


def test_a_consumed_topic_carries_every_contract_registered_on_it() -> None:
    channel = document(SPEC)["channels"][topics.CONTRACTS_POLICY]
    registered = [t for t, r in REGISTRY.items() if r.topic == topics.CONTRACTS_POLICY]
    assert channel["address"] == topics.CONTRACTS_POLICY
    assert list(channel["messages"]) == registered


def test_the_group_receives_each_topic_it_consumes_and_the_service_sends_what_it_publishes() -> (
    None
):
    operations = document(SPEC)["operations"].values()
    received = {o["channel"]["$ref"] for o in operations if o["action"] == "receive"}
    sent = {o["channel"]["$ref"] for o in operations if o["action"] == "send"}
    assert received == {"#/channels/portal.contracts.policy.v1", "#/channels/upstream.contracts.v1"}
    assert "#/channels/portal.loyalty.account.v1" in sent


def test_a_receive_operation_names_its_consumer_group() -> None:
    operation = document(SPEC)["operations"][f"{GROUP}.receive.{topics.CONTRACTS_POLICY}"]
    assert operation["bindings"]["kafka"]["groupId"] == {"type": "string", "enum": [GROUP]}


def test_each_consumer_group_sends_its_dead_letters_to_its_own_channel() -> None:
    doc = document(SPEC)
    operation = doc["operations"][f"{GROUP}.dead-letter"]
    assert operation["action"] == "send"
    assert resolve(doc, operation["channel"]["$ref"])["address"] == "portal.dlq.fake.facts"


def test_a_service_that_consumes_nothing_has_no_dead_letters() -> None:
    doc = document(StreamSpec("quiet", publishes=(topics.LOYALTY_ACCOUNT,)))
    assert "DeadLetter" not in doc["components"]["messages"]
    assert list(doc["channels"]) == [topics.LOYALTY_ACCOUNT]


def test_channels_are_the_production_topic_names_whatever_the_prefix() -> None:
    addresses = {c["address"] for c in document(SPEC)["channels"].values()}
    assert addresses == {
        "portal.contracts.policy.v1",
        "upstream.contracts.v1",
        "portal.loyalty.account.v1",
        "portal.dlq.fake.facts",
    }


def test_a_topic_on_which_no_contract_is_registered_is_refused() -> None:
    with pytest.raises(ValueError, match=r"portal\.nothing\.v1"):
        StreamSpec("typo", consumes={"typo.group": ("portal.nothing.v1",)})


def test_the_order_in_which_a_spec_lists_groups_and_topics_does_not_change_the_document() -> None:
    reordered = StreamSpec(
        "fake",
        consumes={
            "fake.other": (topics.CLAIMS_CLAIM,),
            GROUP: (topics.UPSTREAM_CONTRACTS, topics.CONTRACTS_POLICY),
        },
        publishes=(topics.LOYALTY_ACCOUNT,),
    )
    ordered = StreamSpec(
        "fake",
        consumes={
            GROUP: (topics.CONTRACTS_POLICY, topics.UPSTREAM_CONTRACTS),
            "fake.other": (topics.CLAIMS_CLAIM,),
        },
        publishes=(topics.LOYALTY_ACCOUNT,),
    )
    assert render(document(reordered)) == render(document(ordered))


# --- messages: payload, headers, key -------------------------------------------------------


@pytest.mark.parametrize("message", [enrolled(), policy_issued_upstream()])
def test_a_real_message_matches_its_documented_payload_and_headers(message: Contract) -> None:
    doc = document(StreamSpec("all", publishes=(registration_of(message).topic,)))
    type_name = message.type_name()
    assert payload_validator(doc, type_name).is_valid(body(message))
    assert headers_validator(doc, type_name).is_valid(header_dict(message))


def test_a_body_the_contract_refuses_is_refused_by_its_documented_payload() -> None:
    doc = document(StreamSpec("all", publishes=(topics.UPSTREAM_CONTRACTS,)))
    validator = payload_validator(doc, PolicyIssuedUpstream.type_name())
    spaceship = {**body(policy_issued_upstream()), "product_line": "spaceship"}  # in $defs
    nul = {**body(policy_issued_upstream()), "policy_number": "P\u00001"}
    assert not validator.is_valid(spaceship)
    assert not validator.is_valid(nul)


def test_headers_of_another_type_are_refused() -> None:
    doc = document(StreamSpec("all", publishes=(topics.LOYALTY_ACCOUNT,)))
    headers = {**header_dict(enrolled()), "ce_type": "de.portal.loyalty.PointsCredited.v1"}
    assert not headers_validator(doc, CustomerEnrolled.type_name()).is_valid(headers)


@pytest.mark.parametrize("message", [enrolled(), policy_issued_upstream()])
def test_the_documented_key_id_and_subject_fields_are_what_the_codec_and_registry_use(
    message: Contract,
) -> None:
    key_field = partition_key_field(registration_of(message))
    cloud_event = encode(message, "/portal/test")
    assert getattr(message, key_field) == partition_key(message) == cloud_event.subject
    assert str(getattr(message, id_field_of(type(message)))) == cloud_event.id


def test_every_registered_contract_has_a_documented_partition_key() -> None:
    doc = document(StreamSpec("all", publishes=sorted({r.topic for r in REGISTRY.values()})))
    for type_name, registration in REGISTRY.items():
        message = doc["components"]["messages"][type_name]
        assert message["x-partition-key"] == partition_key_field(registration)
        assert message["bindings"]["kafka"]["key"]["type"] == "string"


def test_the_cloud_events_headers_document_every_header_the_codec_writes() -> None:
    schema = document(SPEC)["components"]["schemas"][CLOUD_EVENTS_HEADERS]
    written = header_dict(enrolled())
    assert set(written) <= set(schema["properties"])
    assert set(schema["required"]) <= set(written)


def _record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="portal.contracts.policy.v1", partition=0, offset=7, timestamp=0,
        timestamp_type=0, key=b"k", value=value, checksum=None, serialized_key_size=1,
        serialized_value_size=len(value), headers=[("ce_id", b"1")],
    )  # fmt: skip


def _dead_letter_headers(value: bytes) -> set[str]:
    record = dead_letter_record("portal.dlq.g", "g", DeadLetter(_record(value), "broken"))
    return {name for name, _ in record.headers if name.startswith("x-dlq-")}


def test_the_dead_letter_headers_are_those_the_stream_writes() -> None:
    oversized = b"x" * (DEAD_LETTER_MAX_BODY + 1)
    assert _dead_letter_headers(b"{}") == set(ALWAYS_SET_DEAD_LETTER_HEADERS)
    assert _dead_letter_headers(oversized) == set(DEAD_LETTER_HEADERS)


# --- the running service -------------------------------------------------------------------


async def _ignore(messages: Sequence[Contract], uow: Any) -> None:
    return None


def _stream(prefix: str) -> EventStream[Any]:
    """Never started: only its subscriptions are looked at."""
    settings = ServiceSettings(service_name="fake", topic_prefix=prefix)
    uow: Any = InMemoryUnitOfWork()
    return EventStream(settings, memory_transactions(uow))


def test_a_stream_subscribed_as_its_spec_says_has_no_mismatches_whatever_its_prefix() -> None:
    stream = _stream("run-42.")
    stream.subscriber(GROUP, *SPEC.topics(GROUP))(_ignore)
    assert mismatches(stream, SPEC) == []


def test_a_stream_subscribed_otherwise_than_its_spec_is_told_how() -> None:
    stream = _stream("")
    stream.subscriber(GROUP, topics.CONTRACTS_POLICY)(_ignore)
    stream.subscriber("fake.other", topics.IDENTITY_CUSTOMER)(_ignore)
    assert mismatches(stream, SPEC) == [
        f"group {GROUP}: subscribes ['portal.contracts.policy.v1'], documented "
        "['portal.contracts.policy.v1', 'upstream.contracts.v1']",
        "group fake.other: subscribes ['portal.identity.customer.v1'], documented []",
    ]


async def test_a_mounted_app_serves_the_document_and_a_page_that_loads_nothing_else() -> None:
    app = FastAPI()
    doc = document(SPEC)
    mount(app, doc)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        served = await client.get("/asyncapi.json")
        page = await client.get("/asyncapi")
    assert served.json() == doc
    assert page.headers["content-type"].startswith("text/html")
    assert "href='/asyncapi.json'" in page.text
    assert "<script" not in page.text
    assert "https://" not in page.text
    assert "portal.dlq.fake.facts" in page.text


def test_the_mounted_routes_are_not_in_the_openapi_document() -> None:
    app = FastAPI()
    mount(app, document(SPEC))
    assert "/asyncapi" not in app.openapi()["paths"]
    assert "/asyncapi.json" not in app.openapi()["paths"]
