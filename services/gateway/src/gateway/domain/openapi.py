"""One OpenAPI description of every customer route behind the gateway (GW-1). Pure.

From each upstream's own document: the paths the gateway forwards to that upstream
(internal, operators', health and document routes are left out - they are not
reachable), unchanged; the components those paths use, transitively (so nothing that
only internal routes use appears). Components of the same name and the same definition
in several services are one; where the definitions differ, each service's copy is
renamed `<service>_<name>` and its references follow. Every operation also documents
what the gateway itself may answer (401 on routes that need a token, 413, 429, 502, 503,
504), as RFC 9457 problems; routes that need a token declare the bearer scheme.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

Document = dict[str, Any]
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PREFIX = "#/components/"
PROBLEM_JSON = "application/problem+json"
BEARER = "bearer"

Keep = Callable[[str, str], bool]  # (service, path) -> forwarded to that service
Public = Callable[[str, str], bool]  # (METHOD, path) -> reachable without a token


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_PREFIX):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _split(ref: str) -> tuple[str, str]:
    section, _, name = ref.removeprefix(_PREFIX).partition("/")
    return section, name


def _rewrite(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: (renames.get(value, value) if key == "$ref" and isinstance(value, str)
                  else _rewrite(value, renames))
            for key, value in node.items()
        }  # fmt: skip
    if isinstance(node, list):
        return [_rewrite(item, renames) for item in node]
    return node


def _used_components(document: Document, roots: Any) -> dict[tuple[str, str], Any]:
    """Every component reachable from `roots` through `$ref`s (transitively)."""
    components = document.get("components", {})
    found: dict[tuple[str, str], Any] = {}
    pending = list(_refs(roots))
    while pending:
        key = _split(pending.pop())
        if key in found:
            continue
        definition = components.get(key[0], {}).get(key[1])
        if definition is None:
            continue  # a dangling reference stays as the service wrote it
        found[key] = definition
        pending.extend(_refs(definition))
    return found


def _canonical(definition: Any) -> str:
    return json.dumps(definition, sort_keys=True)


def _clashing(used: Mapping[str, Mapping[tuple[str, str], Any]]) -> set[tuple[str, str]]:
    """Component names whose definitions differ between services - directly, or through
    a component they reference that does (renaming it changes the referrer too)."""
    definitions: dict[tuple[str, str], set[str]] = {}
    for components in used.values():
        for key, definition in components.items():
            definitions.setdefault(key, set()).add(_canonical(definition))
    clashing = {key for key, seen in definitions.items() if len(seen) > 1}
    changed = True
    while changed:
        changed = False
        for components in used.values():
            for key, definition in components.items():
                if key in clashing:
                    continue
                if any(_split(ref) in clashing for ref in _refs(definition)):
                    clashing.add(key)
                    changed = True
    return clashing


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }


def _gateway_answers(operation: dict[str, Any], public: bool) -> None:
    responses = operation.setdefault("responses", {})
    statuses = [429, 502, 503, 504]
    if "requestBody" in operation:
        statuses.append(413)
    if not public:
        statuses.append(401)
        operation["security"] = [{BEARER: []}]
    for status in statuses:
        responses.setdefault(str(status), _problem_response(status))
    operation["responses"] = dict(sorted(responses.items()))


def combine(
    documents: Mapping[str, Document],
    *,
    keep: Keep,
    public: Public,
    problem_schemas: Mapping[str, Any],
    title: str = "Customer portal API",
    version: str = "1",
) -> Document:
    """`documents`: service name -> its OpenAPI document (services in a stable order);
    `problem_schemas`: the ProblemDetails schema and those it references, by name."""
    kept_paths: dict[str, dict[str, Any]] = {}
    used: dict[str, dict[tuple[str, str], Any]] = {}
    for service, source in documents.items():
        paths = {p: item for p, item in source.get("paths", {}).items() if keep(service, p)}
        kept_paths[service] = paths
        used[service] = _used_components(source, paths)

    clashing = _clashing(used)
    combined_paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    tags: dict[str, Any] = {}
    for service, paths in kept_paths.items():
        renames = {
            f"{_PREFIX}{section}/{name}": f"{_PREFIX}{section}/{service}_{name}"
            for section, name in used[service]
            if (section, name) in clashing
        }
        for (section, name), definition in sorted(used[service].items()):
            target = f"{service}_{name}" if (section, name) in clashing else name
            components.setdefault(section, {})[target] = _rewrite(definition, renames)
        for path, item in paths.items():
            item = _rewrite(copy.deepcopy(item), renames)
            for method in _METHODS:
                operation = item.get(method)
                if not isinstance(operation, dict):
                    continue
                _gateway_answers(operation, public(method.upper(), path))
                op_id = operation.get("operationId")
                if isinstance(op_id, str):
                    if op_id in operation_ids:
                        op_id = operation["operationId"] = f"{service}_{op_id}"
                    operation_ids.add(op_id)
            combined_paths[path] = item
        for tag in documents[service].get("tags", []):
            tags.setdefault(tag.get("name"), tag)

    schemas = components.setdefault("schemas", {})
    for name, schema in problem_schemas.items():  # ProblemDetails and what it references
        schemas.setdefault(name, schema)
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /identity/login",
    }
    document: Document = {
        "openapi": _openapi_version(documents),
        "info": {
            "title": title,
            "version": version,
            "description": "Every customer route of the portal, served through the gateway.",
        },
        "paths": dict(sorted(combined_paths.items())),
        "components": {section: dict(sorted(c.items())) for section, c in components.items()},
    }
    if tags:
        document["tags"] = list(tags.values())
    return document


def _openapi_version(documents: Mapping[str, Document]) -> str:
    versions = {str(d.get("openapi", "3.1.0")) for d in documents.values()}
    return max(versions) if versions else "3.1.0"
