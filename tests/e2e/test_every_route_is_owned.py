"""GW-1, OWASP API1 end to end: every customer route of every service, read from the
gateway's combined OpenAPI (a new route is walked without touching this test), refuses
another customer's objects.

Two real customers each own a contract, a claim (with a photo), a document and a message
(with an attachment) and a session. Anna names Ben's objects on every route that takes an
object's id: 404 or 403, never Ben's data and never a change to it. Every route without an
id is called as Anna: none of Ben's ids appear in her answers. A route with a path
parameter this test does not know fails it - extend `OWNED` with the new kind of object.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date
from typing import Any

import httpx
import jwt
import pytest
from e2e_factories import PDF, PNG, document_for
from e2e_harness import Customer, Platform, answer, eventually, onboard

pytestmark = pytest.mark.e2e

PARAMETER = re.compile(r"\{([^}]+)\}")
IBAN = "DE89370400440532013000"


async def own_everything(platform: Platform, publish: Any) -> tuple[Customer, dict[str, str]]:
    """A customer with a contract, a claim, a document, a message; their ids by kind."""
    customer = await onboard(platform, publish)
    with platform.gateway(customer.token) as portal:
        contract = answer(portal.get("/contracts"))[0]  # type: ignore[index]

        def reported() -> dict[str, Any] | None:
            response = portal.post(
                "/claims",
                data={"policy_id": contract["policy_id"], "claim_type": "household",
                      "incident_date": date.today().isoformat(), "place": "Köln",
                      "description": "Wasserschaden"},
                files=[("attachments", ("kueche.png", PNG, "image/png"))],
                headers={"Idempotency-Key": f"walk-{customer.customer_id}"},
            )  # fmt: skip
            # claims learns of the contract from contracts' events: 404 until it did
            assert response.status_code in (201, 404), response.text
            return response.json() if response.status_code == 201 else None

        claim = eventually(reported)
        message = answer(
            portal.post(
                "/messages", data={"subject": "Frage", "text": "Wie ist der Stand?"},
                files=[("files", ("beleg.pdf", PDF, "application/pdf"))],
            ),
            201,
        )  # fmt: skip
    with platform.as_system("documents", "output-management") as output:
        delivered = answer(
            output.post("/internal/documents", json=document_for(
                customer.customer_id, customer.policy_number, "Versicherungsschein")),
            201,
        )  # fmt: skip
    owned = {
        "policy_id": contract["policy_id"],
        "claim_id": claim["claim_id"],
        "claim_attachment_id": claim["attachments"][0]["attachment_id"],
        "document_id": delivered["document_id"],
        "message_id": message["message_id"],
        "message_attachment_id": message["attachments"][0]["attachment_id"],
        "session_id": jwt.decode(customer.token, options={"verify_signature": False})["sid"],
        # Ben has no bound device and no mTAN (no second factor): ids nobody owns.
        "device_id": "dev-unknown-0000",
        "mtan_id": "mtan-unknown-0000",
    }
    return customer, owned


def fill(path: str, owned: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "attachment_id":
            name = ("claim_" if path.startswith("/claims/") else "message_") + name
        assert name in owned, f"{path}: a parameter this test does not know: {name}"
        return owned[name]

    return PARAMETER.sub(value, path)


def example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A small valid value of a JSON schema (enough to get past validation to the
    ownership check)."""
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[1]], components)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return example(options[0], components)
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {name: example(properties[name], components)
                for name in schema.get("required", [])}  # fmt: skip
    if kind == "array":
        return [example(schema.get("items", {}), components)] * schema.get("minItems", 0)
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    if schema.get("format") == "date":
        return date.today().isoformat()
    if schema.get("format") == "binary" or "contentMediaType" in schema:
        return PDF
    return "x" * max(int(schema.get("minLength", 1)), 1)


# Bodies that the generated example would not make valid (patterns, checksums).
BODIES: dict[str, dict[str, Any]] = {
    "PUT /contracts/{policy_id}/bank-details": {"iban": IBAN, "mtan_id": "mtan-1"},
    "POST /contracts/{policy_id}/bank-details/mtan": {"iban": IBAN},
    "POST /identity/mtans/{mtan_id}/confirm": {"code": "123456"},
}


def request(
    client: httpx.Client, method: str, template: str, path: str, operation: dict[str, Any],
    components: dict[str, Any],
) -> httpx.Response:  # fmt: skip
    body = operation.get("requestBody", {}).get("content", {})
    key = f"{method.upper()} {template}"
    required = [p for p in operation.get("parameters", []) if p.get("required")]
    headers = {p["name"]: f"walk-{uuid.uuid4().hex}" for p in required if p["in"] == "header"}
    params = {p["name"]: str(example(p.get("schema", {}), components))
              for p in required if p["in"] == "query"}  # fmt: skip
    portal = _Named(client, headers, params)
    if "multipart/form-data" in body:
        schema = example(body["multipart/form-data"]["schema"], components)
        files = {k: ("beleg.pdf", PDF, "application/pdf") for k, v in schema.items()
                 if isinstance(v, bytes)}  # fmt: skip
        data = {k: v for k, v in schema.items() if not isinstance(v, bytes | list)}
        return portal.request(method, path, data=data, files=files)
    if "application/json" in body:
        payload = BODIES.get(key) or example(body["application/json"]["schema"], components)
        return portal.request(method, path, json=payload)
    return portal.request(method, path)


class _Named:
    """A client that adds the operation's required headers and query parameters."""

    def __init__(self, client: httpx.Client, headers: dict[str, str],
                 params: dict[str, str]) -> None:  # fmt: skip
        self._client, self._headers, self._params = client, headers, params

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self._client.request(method, path, headers=self._headers, params=self._params,
                                    **kw)  # fmt: skip


def leaked(response: httpx.Response, owned: dict[str, str], sent: Any = ()) -> list[str]:
    """Which of `owned` the answer shows (a problem's `instance` echoes the path asked;
    `sent`: values the request itself named, which an answer may echo)."""
    text = response.text
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        text = json.dumps({k: v for k, v in response.json().items() if k != "instance"})
    for value in sent:
        text = text.replace(value, "")
    return [kind for kind, value in owned.items() if value in text and "unknown" not in value]


async def test_gw1_every_customer_route_refuses_another_customers_objects(
    platform: Platform, publish: Any
) -> None:
    anna, _ = await own_everything(platform, publish)
    ben, bens = await own_everything(platform, publish)
    with platform.gateway() as portal:
        document = answer(portal.get("/openapi.json"))
    components = document.get("components", {}).get("schemas", {})
    # operators log in at the console; internal routes are for systems: neither is a
    # customer route, neither is described nor reachable through the gateway
    hidden = [p for p in document["paths"] if p.startswith(("/internal", "/identity/operators"))]
    assert hidden == []
    with platform.gateway() as portal:
        operator_login = {"username": "op", "password": "x" * 12, "otp": "123456"}
        for path in ("/identity/operators/login", "/internal/identity/mtans"):
            assert portal.post(path, json=operator_login).status_code == 404

    walked: list[str] = []
    with platform.gateway(anna.token) as as_anna, platform.gateway(ben.token) as as_ben:
        for template, operations in document["paths"].items():
            for method, operation in operations.items():
                if method not in {"get", "post", "put", "patch", "delete"}:
                    continue
                name = f"{method.upper()} {template}"
                if "{" in template:
                    path = fill(template, bens)
                    refused = request(as_anna, method, template, path, operation, components)
                    assert refused.status_code in (403, 404), f"{name}: {refused.text}"
                    assert refused.headers["content-type"].startswith("application/problem+json")
                    assert not leaked(refused, bens), f"{name}: {refused.text}"
                    walked.append(name)
                elif method == "get":
                    params = {p["name"]: bens_value(p["name"], ben, bens)
                              for p in operation.get("parameters", [])
                              if p.get("in") == "query" and p.get("required")}  # fmt: skip
                    seen = as_anna.get(template, params=params)
                    assert seen.status_code < 500, f"{name}: {seen.text}"
                    assert not leaked(seen, bens, params.values()), (
                        f"{name} shows Ben's: {seen.text}"
                    )
                    walked.append(name)

        # Ben's objects are still his and unchanged: the positive control of every refusal
        assert answer(as_ben.get(f"/claims/{bens['claim_id']}"))["claim_id"] == bens["claim_id"]
        shown = answer(as_ben.get(f"/documents/{bens['document_id']}"))
        assert shown["read"] is False, "Anna's POST .../read did not touch Ben's document"
        assert as_ben.get(f"/documents/{bens['document_id']}/content").content == PDF
        assert answer(as_ben.get(f"/messages/{bens['message_id']}"))["message_id"]
        claim_photo = f"/claims/{bens['claim_id']}/attachments/{bens['claim_attachment_id']}"
        assert as_ben.get(claim_photo).content == PNG
        attachment = f"/messages/{bens['message_id']}/attachments/{bens['message_attachment_id']}"
        assert as_ben.get(attachment).content == PDF
        # Ben's session survived Anna's DELETE /identity/sessions/{his}
        sessions = answer(as_ben.get("/identity/sessions"))["sessions"]
        assert bens["session_id"] in [s["session_id"] for s in sessions]
        assert answer(as_ben.get("/identity/me"))["customer_id"] == ben.customer_id
        assert answer(as_ben.get(f"/contracts/{bens['policy_id']}"))

    with_ids = [w for w in walked if "{" in w]
    assert len(with_ids) >= 15, walked  # every service's object routes were walked
    for prefix in ("/claims", "/contracts", "/documents", "/messages", "/identity"):
        assert any(prefix in w for w in with_ids), (prefix, walked)


def bens_value(name: str, ben: Customer, bens: dict[str, str]) -> str:
    """A required query parameter, naming Ben's object where it names one."""
    if name == "policy_number":
        return ben.policy_number
    return bens.get(name, "x")
