"""The committed JSON Schemas are the contract with systems that do not use Python."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
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
