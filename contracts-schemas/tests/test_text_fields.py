"""No contract carries a control character: U+0000 cannot be stored by PostgreSQL
("invalid byte sequence 0x00"), so such a message must be dead-lettered, not crash a consumer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from contracts_schemas.base import Contract, Identifier, MultilineText, Text
from contracts_schemas.cloudevents import CloudEvent, InvalidMessage, decode
from contracts_schemas.export import schema_of
from contracts_schemas.registry import REGISTRY
from pydantic import ValidationError

CONTROL_CHARACTERS = ["\x00", "\x01", "\n", "\r", "\t", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"]


def enrolled_body(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "aggregate_id": "cust-1", "aggregate_version": 1,
        "occurred_at": "2026-03-31T10:00:00+00:00", "customer_ids": ["cust-1"],
        "customer_id": "cust-1",
    } | overrides  # fmt: skip


def registered_body(**address: str) -> dict[str, Any]:
    return enrolled_body(
        first_name="Erika", last_name="Mustermann", birth_date="1970-01-01",
        email="erika@example.org",
        address={"recipient": "Erika", "street": "Hauptstr. 1", "postal_code": "10115",
                 "city": "Berlin"} | address,
    )  # fmt: skip


def delivered(type_name: str, body: dict[str, Any]) -> Contract:
    data = json.dumps(body).encode()
    return decode(CloudEvent(id=body["event_id"], type=type_name, source="/test", data=data))


@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=repr)
def test_an_event_whose_customer_id_carries_a_control_character_is_dead_lettered(
    char: str,
) -> None:
    body = enrolled_body(customer_id=f"cust{char}1")
    with pytest.raises(InvalidMessage, match="customer_id"):
        delivered("de.portal.loyalty.CustomerEnrolled.v1", body)


@pytest.mark.parametrize(
    "body",
    [
        enrolled_body(customer_ids=["cust-1", "cust\x002"]),
        enrolled_body(aggregate_id="cust\x001"),
        registered_body(street="Hauptstr.\x00 1"),
        registered_body(city="Berlin\n"),
    ],
    ids=["customer_ids item", "aggregate_id", "nested street", "trailing line feed"],
)
def test_a_nul_byte_anywhere_in_an_event_fails_validation(body: dict[str, Any]) -> None:
    type_name = (
        "de.portal.identity.CustomerRegistered.v1"
        if "address" in body
        else "de.portal.loyalty.CustomerEnrolled.v1"
    )
    with pytest.raises(InvalidMessage, match="schema violation"):
        delivered(type_name, body)


def test_ordinary_text_with_umlauts_spaces_and_emoji_still_passes() -> None:
    body = registered_body(street="Königstraße 1 ½ – Hinterhaus 🏠", city="Frankfurt am Main")
    assert delivered("de.portal.identity.CustomerRegistered.v1", body)


def _string_nodes(node: Any, at: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "string" and "enum" not in node and "format" not in node:
            yield at, node
        for key, child in node.items():
            yield from _string_nodes(child, f"{at}.{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _string_nodes(child, f"{at}[{i}]")


@pytest.mark.parametrize("type_name", sorted(REGISTRY))
def test_every_free_string_of_every_contract_refuses_control_characters(type_name: str) -> None:
    nodes = _string_nodes(schema_of(type_name), "")
    unguarded = [at for at, node in nodes if "pattern" not in node]
    assert unguarded == []


class Note(Contract):
    context = "test"

    key: Identifier
    line: Text
    body: MultilineText


def test_multiline_text_keeps_line_feeds_and_tabs_but_no_other_control_character() -> None:
    assert Note(key="k", line="l", body="Zeile 1\n\tZeile 2").body == "Zeile 1\n\tZeile 2"
    for char in ("\x00", "\r", "\x0b", "\x7f"):
        with pytest.raises(ValidationError):
            Note(key="k", line="l", body=f"a{char}b")
    with pytest.raises(ValidationError):
        Note(key="k", line="a\nb", body="")
