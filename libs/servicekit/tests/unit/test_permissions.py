"""OWASP API5: an internal system calls only the operations it owns, per environment."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from servicekit.auth import ServiceCredentials, basic_authorization
from servicekit.http import PROBLEM_JSON, create_app, requires
from servicekit.permissions import DEFAULT_SYSTEM_OPERATIONS, Operation, SystemPermissions
from servicekit.settings import ServiceSettings

SECRETS = {"collections": "co-secret", "policy-admin": "pa-secret", "operators": "op-secret"}


def app(permissions: SystemPermissions | None = None) -> FastAPI:
    app = create_app("test")
    app.state.service_credentials = ServiceCredentials(
        {system: ServiceCredentials.digest(secret) for system, secret in SECRETS.items()}
    )
    if permissions is not None:
        app.state.system_permissions = permissions

    @app.post("/internal/payments")
    async def pay(caller: Annotated[str, Depends(requires(Operation.PAYMENTS))]) -> str:
        return caller

    @app.post("/internal/policies", dependencies=[Depends(requires("policies"))])
    async def issue() -> str:
        return "issued"

    return app


def call(client: TestClient, path: str, system: str, secret: str | None = None) -> int:
    headers = {"Authorization": basic_authorization(system, secret or SECRETS[system])}
    return client.post(path, headers=headers).status_code


def test_a_system_calls_the_operations_it_owns_and_learns_its_own_name() -> None:
    client = TestClient(app())
    response = client.post(
        "/internal/payments",
        headers={"Authorization": basic_authorization("collections", "co-secret")},
    )
    assert response.status_code == 200
    assert response.json() == "collections"
    assert call(client, "/internal/policies", "policy-admin") == 200


@pytest.mark.parametrize(
    ("system", "path"),
    [
        ("collections", "/internal/policies"),
        ("policy-admin", "/internal/payments"),
        ("operators", "/internal/payments"),
    ],
)
def test_a_system_with_valid_credentials_is_forbidden_other_systems_operations(
    system: str, path: str
) -> None:
    response = TestClient(app()).post(
        path, headers={"Authorization": basic_authorization(system, SECRETS[system])}
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 403


def test_wrong_or_missing_credentials_are_401_before_any_permission_is_considered() -> None:
    client = TestClient(app())
    assert call(client, "/internal/payments", "collections", "wrong") == 401
    assert client.post("/internal/payments").status_code == 401


def test_a_system_known_to_the_credentials_but_granted_nothing_is_forbidden() -> None:
    client = TestClient(app(SystemPermissions({"collections": []})))
    assert call(client, "/internal/payments", "collections") == 403


def test_the_environment_grants_operations_through_portal_system_operations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORTAL_SYSTEM_OPERATIONS", json.dumps({"operators": ["payments"]}))
    client = TestClient(app())  # no app.state.system_permissions: read from the settings
    assert call(client, "/internal/payments", "operators") == 200
    assert call(client, "/internal/payments", "collections") == 403


def test_by_default_each_upstream_system_owns_its_own_operations() -> None:
    defaults = ServiceSettings().system_operations
    assert defaults == {system: list(ops) for system, ops in DEFAULT_SYSTEM_OPERATIONS.items()}
    assert defaults["policy-admin"] == ["policies"]
    assert defaults["collections"] == ["payments"]
    assert {"jobs", "deliveries", "replays"} <= set(defaults["operators"])
    assert "payments" not in defaults["operators"]


def test_an_unknown_operation_name_fails_when_declared_not_when_called() -> None:
    with pytest.raises(ValueError, match="payment"):
        requires("payment")
    with pytest.raises(ValueError, match="everything"):
        SystemPermissions({"collections": ["everything"]})
