"""The committed JSON Schemas are the contract with systems that do not use Python."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from contracts_schemas.base import NO_CONTROL_CHARACTERS, NO_CONTROL_CHARACTERS_BUT_LINES
from contracts_schemas.compat import breaking_changes
from contracts_schemas.export import path_of, problems_against_committed, schema_of

PREMIUM_PAID = "de.portal.contracts.PremiumPaid.v1"


def committed(type_name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path_of(type_name).read_text())
    return schema


def test_every_contract_matches_its_committed_schema_of_the_same_version() -> None:
    assert problems_against_committed() == {}


def test_the_checker_accepts_a_new_optional_field() -> None:
    new = copy.deepcopy(committed(PREMIUM_PAID))
    new["properties"]["channel"] = {"type": "string", "default": "web"}
    assert breaking_changes(committed(PREMIUM_PAID), new) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["properties"].pop("amount_cents"), "field amount_cents was removed"),
        (
            lambda s: s["properties"].__setitem__("amount_cents", {"type": "string"}),
            "field amount_cents changed type",
        ),
        (
            lambda s: (
                s["properties"].__setitem__("currency", {"type": "string"}),
                s["required"].append("currency"),
            ),
            "new field currency is required",
        ),
        (lambda s: s["required"].append("customer_ids"), "field customer_ids became required"),
        (
            lambda s: s["properties"]["payment_id"].__setitem__("maxLength", 10),
            "field payment_id tightened maxLength",
        ),
    ],
    ids=["removed", "retyped", "new-required", "made-required", "tightened"],
)
def test_the_checker_refuses_a_deliberately_broken_change(change: Any, expected: str) -> None:
    broken = copy.deepcopy(committed(PREMIUM_PAID))
    change(broken)
    problems = breaking_changes(committed(PREMIUM_PAID), broken)
    assert any(expected in p for p in problems), problems


def test_the_checker_sees_an_enum_value_removed_in_a_nested_definition() -> None:
    old = schema_of(PREMIUM_PAID)
    new = copy.deepcopy(old)
    new["$defs"]["ProductLine"]["enum"].remove("motor")
    assert breaking_changes(old, new) == ["field $defs.ProductLine lost enum values ['motor']"]


def _without_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_patterns(v) for k, v in node.items() if k != "pattern"}
    if isinstance(node, list):
        return [_without_patterns(v) for v in node]
    return node


def test_refusing_control_characters_in_fields_that_had_no_pattern_is_an_accepted_fix() -> None:
    current = schema_of("de.portal.identity.CustomerRegistered.v1")
    before_the_fix = _without_patterns(current)
    before_the_fix["$defs"]["PostalAddress"]["properties"]["country"]["pattern"] = "^[A-Z]{2}$"
    assert breaking_changes(before_the_fix, current) == []


@pytest.mark.parametrize(
    ("old_pattern", "new_pattern"),
    [
        (None, "^[a-z0-9-]+$"),
        ("^[A-Z]{2}$", NO_CONTROL_CHARACTERS),
        (NO_CONTROL_CHARACTERS_BUT_LINES, NO_CONTROL_CHARACTERS),
    ],
    ids=["any-other-new-pattern", "replacing-a-pattern", "multiline-made-single-line"],
)
def test_the_allow_list_accepts_nothing_but_the_control_character_patterns_added(
    old_pattern: str | None, new_pattern: str
) -> None:
    old = copy.deepcopy(committed(PREMIUM_PAID))
    old["properties"]["payment_id"].pop("pattern", None)
    if old_pattern:
        old["properties"]["payment_id"]["pattern"] = old_pattern
    new = copy.deepcopy(old)
    new["properties"]["payment_id"]["pattern"] = new_pattern
    assert breaking_changes(old, new) == ["field payment_id changed its pattern"]
