"""Compatibility of a JSON Schema with the committed one of the same version.

Within one schema version a change must keep both old producers and old consumers
working: no field removed, renamed or retyped, no new required field, no optional field
made required, no enum value removed, no constraint tightened. Anything else needs a new
version and an upcaster beside the model.

One exception, by name: a pattern listed in `ACCEPTED_ADDED_PATTERNS` may be added to a
string field that had no pattern. The list is closed; each entry is a bug fix that no
valid producer could depend on (README.md, "Control characters").
"""

from __future__ import annotations

from typing import Any

from contracts_schemas.base import NO_CONTROL_CHARACTERS, NO_CONTROL_CHARACTERS_BUT_LINES

Schema = dict[str, Any]

_TIGHTER_WHEN_LARGER = ("minLength", "minimum", "exclusiveMinimum", "minItems")
_TIGHTER_WHEN_SMALLER = ("maxLength", "maximum", "exclusiveMaximum", "maxItems")
# Refusing control characters: U+0000 crashed PostgreSQL consumers.
ACCEPTED_ADDED_PATTERNS = frozenset({NO_CONTROL_CHARACTERS, NO_CONTROL_CHARACTERS_BUT_LINES})


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Every incompatibility of `new` against `old`, as readable sentences."""
    problems = _compare_object(old, new, old, new, "")
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})
    for name, old_def in old_defs.items():
        if name not in new_defs:
            problems.append(f"definition {name} was removed")
        else:
            problems += _compare_node(old_def, new_defs[name], old, new, f"$defs.{name}")
    return problems


def _compare_object(
    old: Schema, new: Schema, old_root: Schema, new_root: Schema, at: str
) -> list[str]:
    problems: list[str] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    for name, old_prop in old_props.items():
        where = f"{at}{name}"
        if name not in new_props:
            problems.append(f"field {where} was removed")
            continue
        if name in new_required and name not in old_required:
            problems.append(f"field {where} became required")
        problems += _compare_node(old_prop, new_props[name], old_root, new_root, where)
    for name in new_props.keys() - old_props.keys():
        if name in new_required:
            problems.append(f"new field {at}{name} is required")
    return problems


def _compare_node(
    old: Schema, new: Schema, old_root: Schema, new_root: Schema, at: str
) -> list[str]:
    if _shape(old) != _shape(new):
        return [f"field {at} changed type from {_shape(old)} to {_shape(new)}"]
    problems: list[str] = []
    removed = set(map(str, old.get("enum", ()))) - set(map(str, new.get("enum", ())))
    if removed:
        problems.append(f"field {at} lost enum values {sorted(removed)}")
    for key in _TIGHTER_WHEN_LARGER:
        if key in new and (key not in old or new[key] > old[key]):
            problems.append(f"field {at} tightened {key} to {new[key]}")
    for key in _TIGHTER_WHEN_SMALLER:
        if key in new and (key not in old or new[key] < old[key]):
            problems.append(f"field {at} tightened {key} to {new[key]}")
    if _pattern_tightened(old, new):
        problems.append(f"field {at} changed its pattern")
    if old.get("type") == "object" and "properties" in old:
        problems += _compare_object(old, new, old_root, new_root, f"{at}.")
    return problems


def _pattern_tightened(old: Schema, new: Schema) -> bool:
    if "pattern" not in new or new["pattern"] == old.get("pattern"):
        return False
    return "pattern" in old or new["pattern"] not in ACCEPTED_ADDED_PATTERNS


def _shape(node: Schema) -> str:
    """A canonical description of what values a node accepts, ignoring constraints."""
    if "$ref" in node:
        return f"ref:{node['$ref'].rsplit('/', 1)[-1]}"
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in node:
            return f"{combinator}({','.join(sorted(_shape(n) for n in node[combinator]))})"
    kind = node.get("type", "any")
    if isinstance(kind, list):
        kind = "|".join(sorted(kind))
    if kind == "array":
        items = node.get("items") or {}
        prefix = node.get("prefixItems")
        inner = ",".join(_shape(n) for n in prefix) if prefix else _shape(items)
        return f"array[{inner}]"
    fmt = node.get("format")
    return f"{kind}:{fmt}" if fmt else str(kind)
