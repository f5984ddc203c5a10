"""Logs carry no personal data (OPS-2); errors are RFC 9457 problems."""

from __future__ import annotations

import json

import pytest
import structlog
from fastapi.testclient import TestClient
from pydantic import BaseModel
from servicekit.http import Problem, create_app
from servicekit.logging import configure_logging, redact


def test_personal_data_is_masked_whatever_the_caller_logs() -> None:
    event = redact(None, "info", {
        "event": "changed", "email": "erika@example.org", "iban": "DE89370400440532013000",
        "customer_id": "cust-1", "note": "mail erika@example.org, IBAN DE89 3704 0044 0532 0130 00",
    })  # fmt: skip
    assert event["email"] == event["iban"] == "***"
    assert event["customer_id"] == "cust-1"
    assert "erika@" not in event["note"]
    assert "0532" not in event["note"]


def test_log_lines_are_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test-service")
    structlog.get_logger("t").info("hello", password="hunter2")
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "hello"
    assert line["service"] == "test-service"
    assert line["password"] == "***"


class Body(BaseModel):
    amount_cents: int


def client() -> TestClient:
    app = create_app("test")

    @app.post("/things")
    async def things(body: Body) -> dict[str, int]:
        if body.amount_cents < 0:
            raise Problem(422, "negative_amount", "Der Betrag darf nicht negativ sein.")
        return {"amount_cents": body.amount_cents}

    return TestClient(app, raise_server_exceptions=False)


def test_a_domain_refusal_is_a_problem_body_with_a_german_detail() -> None:
    response = client().post("/things", json={"amount_cents": -1})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["title"] == "negative_amount"
    assert body["detail"] == "Der Betrag darf nicht negativ sein."
    assert body["instance"] == "/things"
    assert body["request_id"] == response.headers["x-request-id"]


def test_invalid_input_is_a_problem_naming_the_fields() -> None:
    response = client().post("/things", json={"amount_cents": "many"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.amount_cents"


def test_an_unknown_route_is_a_problem_too() -> None:
    response = client().get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
