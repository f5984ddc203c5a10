"""GW-1: one combined OpenAPI description of every customer route."""

from __future__ import annotations

from typing import Any

from gateway.config import BLOCKED_PREFIXES, PUBLIC_ROUTES
from gateway.domain.openapi import combine
from gateway.domain.routing import RouteTable, Upstream

TABLE = RouteTable(
    {
        "/identity": Upstream("identity", ("http://i",)),
        "/contracts": Upstream("contracts", ("http://c",)),
        "/loyalty": Upstream("loyalty", ("http://l",)),
    },
    public=PUBLIC_ROUTES,
    blocked=BLOCKED_PREFIXES,
)
PROBLEM = {"ProblemDetails": {"type": "object", "title": "ProblemDetails"}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def op(schema: dict[str, Any], op_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": op_id,
        "responses": {"200": {"content": {"application/json": {"schema": schema}}}},
    }
    if body is not None:
        operation["requestBody"] = {"content": {"application/json": {"schema": body}}}
    return operation


def contracts_doc() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "paths": {
            "/contracts/{policy_id}": {"get": op(ref("ContractDetails"), "contract")},
            "/contracts/{policy_id}/moves": {"post": op({}, "move", ref("MoveReport"))},
            "/internal/upstream/policies": {"post": op(ref("PolicyIssuedUpstream"), "ingest")},
            "/health/ready": {"get": op(ref("Readiness"), "ready")},
        },
        "components": {
            "schemas": {
                "ContractDetails": {"properties": {"premium": ref("Money")}},
                "Money": {"type": "integer"},
                "MoveReport": {"properties": {"address": ref("PostalAddress")}},
                "PostalAddress": {"properties": {"street": {"type": "string"}}},
                "PolicyIssuedUpstream": {"properties": {"secret": {"type": "string"}}},
                "Readiness": {"type": "object"},
            }
        },
        "tags": [{"name": "customers"}],
    }


def loyalty_doc() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "paths": {
            "/loyalty/statement": {"get": op(ref("Statement"), "contract")},
            "/internal/loyalty/jobs/{kind}": {"post": op({}, "job")},
        },
        "components": {
            "schemas": {
                "Statement": {"properties": {"balance": ref("Money")}},
                "Money": {"type": "string", "description": "another Money"},
            }
        },
    }


def identity_doc() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "paths": {
            "/identity/login": {"post": op({}, "login", ref("PostalAddress"))},
            "/identity/me": {"get": op({}, "me")},
        },
        "components": {
            "schemas": {"PostalAddress": {"properties": {"street": {"type": "string"}}}}
        },
    }


def combined() -> dict[str, Any]:
    return combine(
        {"contracts": contracts_doc(), "identity": identity_doc(), "loyalty": loyalty_doc()},
        keep=lambda service, path: TABLE.routed(path, service),
        public=TABLE.is_public,
        problem_schemas=PROBLEM,
    )


def test_gw1_every_customer_route_is_kept_with_its_path_and_internal_ones_are_not() -> None:
    assert list(combined()["paths"]) == [
        "/contracts/{policy_id}",
        "/contracts/{policy_id}/moves",
        "/identity/login",
        "/identity/me",
        "/loyalty/statement",
    ]


def test_gw1_components_only_internal_routes_use_are_left_out() -> None:
    schemas = combined()["components"]["schemas"]
    assert "PolicyIssuedUpstream" not in schemas
    assert "Readiness" not in schemas


def test_gw1_clashing_component_names_are_prefixed_by_service_and_references_follow() -> None:
    document = combined()
    schemas = document["components"]["schemas"]
    assert "Money" not in schemas
    assert schemas["contracts_Money"] == {"type": "integer"}
    assert schemas["loyalty_Money"]["type"] == "string"
    # Referrers of a renamed component are renamed too: their definitions now differ.
    assert schemas["contracts_ContractDetails"]["properties"]["premium"] == ref("contracts_Money")
    assert schemas["loyalty_Statement"]["properties"]["balance"] == ref("loyalty_Money")
    statement = document["paths"]["/loyalty/statement"]["get"]["responses"]["200"]
    assert statement["content"]["application/json"]["schema"] == ref("loyalty_Statement")


def test_gw1_identical_components_of_several_services_are_one() -> None:
    schemas = combined()["components"]["schemas"]
    assert "PostalAddress" in schemas
    assert not any(name.endswith("_PostalAddress") for name in schemas)


def test_gw1_every_reference_resolves_in_the_combined_document() -> None:
    document = combined()

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for item in node for r in refs(item)]
        return []

    for target in refs(document):
        section, name = target.removeprefix("#/components/").split("/")
        assert name in document["components"][section], target


def test_gw1_operations_document_the_gateways_own_answers_and_token_needs() -> None:
    paths = combined()["paths"]
    me = paths["/identity/me"]["get"]
    login = paths["/identity/login"]["post"]
    move = paths["/contracts/{policy_id}/moves"]["post"]
    assert {"401", "429", "502", "503", "504"} <= set(me["responses"])
    assert "413" not in me["responses"]
    assert me["security"] == [{"bearer": []}]
    assert "security" not in login
    assert "401" not in login["responses"]
    assert "413" in move["responses"]
    problem = me["responses"]["503"]["content"]["application/problem+json"]["schema"]
    assert problem == ref("ProblemDetails")


def test_gw1_operation_ids_stay_unique() -> None:
    ids = [
        operation["operationId"]
        for item in combined()["paths"].values()
        for operation in item.values()
    ]
    assert len(ids) == len(set(ids))
    assert "loyalty_contract" in ids
