"""OPS-2: names, IBANs, codes and passwords fed through every logging path never reach the
output - structlog, the standard logging of uvicorn (a real server), FastStream and
aiokafka, exception traces, dead-letter reasons, `error=repr(exc)`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket

import httpx
import uvicorn
from contracts_schemas.cloudevents import encode
from fastapi import FastAPI
from faststream.kafka import TestKafkaBroker
from kit_factories import premium_paid
from pydantic import BaseModel
from servicekit.http import create_app
from servicekit.logging import configure_logging, get_logger
from servicekit.memory import InMemoryUnitOfWork, memory_transactions
from servicekit.settings import ServiceSettings
from servicekit.stream import EventStream

NAME = "Erika Mustermann"
IBAN = "DE89370400440532013000"
IBAN_SPACED = "DE89 3704 0044 0532 0130 00"
EMAIL = "erika.mustermann@example.org"
PASSWORD = "Sommer2026!Geheim"
MTAN = "483920"
#: Parts of the IBAN too: a masking that keeps its middle groups still leaks it. (Each part
#: is long enough never to turn up by chance in a port or a timestamp's microseconds.)
SECRETS = (NAME, "Mustermann", IBAN, "0532 0130", "370400440532", EMAIL, PASSWORD, MTAN)
#: What a log line carries besides the record it was given: a timestamp and object
#: addresses (`<... object at 0x7fbc5be86a50>`), whose digits can spell anything.
INCIDENTAL = re.compile(r'"timestamp": "[^"]*"|0x[0-9a-f]+')


class Registration(BaseModel):
    name: str
    age: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_with_leaky_routes() -> FastAPI:
    app = create_app("privacy")
    log = get_logger("privacy.routes")

    @app.get("/leak/{what}")
    async def leak(what: str) -> dict[str, str]:
        log.info(
            "customer_changed", customer_id="cust-1", name=NAME, iban=IBAN, code=MTAN,
            password=PASSWORD, details={"email": EMAIL, "note": f"new IBAN {IBAN_SPACED}"},
            note=f"mail to {EMAIL}, code={MTAN}, password={PASSWORD}",
        )  # fmt: skip
        if what == "raise":
            raise ValueError(f"{NAME} could not log in with {PASSWORD}")
        if what == "validate":
            Registration.model_validate({"name": NAME, "age": IBAN})
        return {"ok": "yes"}

    return app


async def uvicorn_paths() -> None:
    """A real uvicorn server configured as `servicekit.runner.serve` does, plus its access
    log switched on: the query string carries personal data."""
    port = free_port()
    config = uvicorn.Config(
        app_with_leaky_routes(), host="127.0.0.1", port=port, log_config=None, access_log=True
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        await client.get("/leak/log", params={"name": NAME, "iban": IBAN, "password": PASSWORD})
        await client.get("/leak/raise")
        await client.get("/leak/validate")
    server.should_exit = True
    await task


async def stream_paths() -> None:
    """A CloudEvent with personal data where a number belongs: dead-lettered with its reason;
    a FastStream handler that raises with personal data in the message."""
    settings = ServiceSettings(service_name="privacy", instance_id="unit")
    stream = EventStream(settings, memory_transactions(InMemoryUnitOfWork()))

    async def handler(messages: object, uow: object) -> None:
        return None

    stream.subscriber("privacy", "portal.contracts.policy.v1")(handler)
    broken = premium_paid("pol-1", 1)
    event = encode(broken, "/contracts")
    body = json.loads(event.data)
    body["amount_cents"] = f"{NAME} {IBAN} {PASSWORD}"
    headers = {k: v.decode() for k, v in event.headers()}
    async with TestKafkaBroker(stream.broker) as broker:
        await broker.publish(
            json.dumps(body).encode(), "portal.contracts.policy.v1", headers=headers
        )
    # FastStream logs a failed handler through the logger the stream gives it, this way:
    try:
        raise RuntimeError(f"password {PASSWORD} of {NAME} rejected")
    except RuntimeError as exc:
        get_logger("faststream").log(
            logging.ERROR, f"RuntimeError: password {PASSWORD} of {NAME} rejected",
            extra={"topic": "portal.contracts.policy.v1", "message_id": "m-1"}, exc_info=exc,
        )  # fmt: skip


def library_paths() -> None:
    logging.getLogger("aiokafka.consumer").warning(
        "Unable to fetch for %s: %s", EMAIL, f"iban={IBAN} code={MTAN}"
    )
    logging.getLogger("faststream.access").error("Could not decode %s", f"password: {PASSWORD}")
    try:
        raise KeyError(NAME)
    except KeyError:
        logging.getLogger("asyncpg").exception("statement failed")
    get_logger("servicekit.stream").warning(
        "batch_failed_retrying", consumer="g", error=repr(ValueError(f"{NAME}: {PASSWORD}"))
    )


def test_ops2_no_personal_data_in_any_log_line() -> None:
    out = io.StringIO()
    configure_logging("privacy", level="DEBUG", stream=out)
    try:
        asyncio.run(uvicorn_paths())
        asyncio.run(stream_paths())
        library_paths()
    finally:
        configure_logging("test")
    text = out.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    loggers = {line["logger"] for line in lines}
    events = " ".join(line["event"] for line in lines)
    # every path was taken
    assert {"privacy.routes", "uvicorn.error", "uvicorn.access", "faststream"} <= loggers
    assert {"aiokafka.consumer", "asyncpg", "servicekit.stream"} <= loggers
    assert "customer_changed" in events
    assert "dead_lettered" in events
    assert any("exception" in line for line in lines if line["logger"] == "uvicorn.error") or any(
        "exception" in line for line in lines if line["event"] == "unhandled_error"
    )
    assert any("exception" in line for line in lines if line["logger"] == "faststream")
    # and nothing personal came out of any of them
    said = [INCIDENTAL.sub("", line) for line in text.splitlines()]
    leaked = [(s, line) for s in SECRETS for line in said if s in line]
    assert leaked == []
    # what is not personal stays readable
    assert "cust-1" in text
    assert "ValueError: <message withheld>" in text
