"""OPS-1 in a real browser (the system's Chromium, headless, driven by Playwright): an
operator logs in with password and one-time password, sees the overview with live
figures once events flow, opens the dead letter a poison message caused, replays it after
the cause was fixed, and the effect is applied exactly once; a customer's token is refused.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from console_harness import Processes, chromium, console_platform, create_operator
from contracts_schemas import topics
from contracts_schemas.base import Contract
from contracts_schemas.topics import dead_letter_topic
from e2e_factories import policy_issued, premium_paid
from e2e_harness import eventually
from identity.domain.operators import time_step, totp
from playwright.sync_api import Browser, Page, expect, sync_playwright
from servicekit.kafka import reliable_producer
from servicekit.testing import publish, read_topic, required_env, unique

pytestmark = pytest.mark.e2e

PASSWORD = "Kiefernzapfen-Morgenrot-7"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
GROUP = "contracts.upstream-ingestion"
EXPECT_TIMEOUT_MS = 60_000  # the hang guard this test already gave its slowest expect
PLAYWRIGHT_DEFAULT_EXPECT_MS = 5_000
T = TypeVar("T")


def _in_thread(work: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on its own loop, beside Playwright's synchronous API."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(work())  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _publish(prefix: str, source: str, *messages: Contract) -> None:
    async def send() -> None:
        producer = reliable_producer(required_env("PORTAL_KAFKA_BOOTSTRAP"), unique("upstream"))
        await producer.start()
        try:
            await publish(producer, *messages, prefix=prefix, source=source)
        finally:
            await producer.stop()

    _in_thread(send)


def _events_of(prefix: str, type_suffix: str, at_least: int) -> list[Any]:
    async def read() -> list[Any]:
        records = await read_topic(
            required_env("PORTAL_KAFKA_BOOTSTRAP"), prefix + topics.CONTRACTS_POLICY,
            at_least=at_least, wait_seconds=2,
        )  # fmt: skip
        return [r for r in records
                if dict(r.headers).get("ce_type", b"").decode().endswith(type_suffix)]  # fmt: skip

    return _in_thread(read)


def _stored_payments(platform: Processes, payment_id: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(required_env("PORTAL_DATABASE_URL"))
        try:
            found = await conn.fetchval(
                f"SELECT count(*) FROM {platform.schema('contracts')}.events"  # noqa: S608
                " WHERE event_type LIKE '%PremiumPaid%' AND payload->>'payment_id' = $1",
                payment_id,
            )
        finally:
            await conn.close()
        return int(found)

    return _in_thread(count)


@pytest.fixture(scope="module")
def platform() -> Iterator[Processes]:
    required_env("PORTAL_DATABASE_URL")
    required_env("PORTAL_KAFKA_BOOTSTRAP")
    with console_platform(unique("console-e2e") + ".") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    # What the pages show comes from server work (a login, Kafka reads, a replay, the
    # overview's next refresh): an `expect` waits for exactly the text it then asserts, and
    # its timeout is a hang guard, never Playwright's 5 s default that a loaded machine
    # outlasts.
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=executable, headless=True)
            yield launched
            launched.close()
    finally:
        expect.set_options(timeout=PLAYWRIGHT_DEFAULT_EXPECT_MS)


def _customer_token(platform: Processes) -> str:
    identity = platform.urls["identity"]
    username = unique("kunde").replace("-", "")[:30]
    registration = {
        "username": username, "password": PASSWORD, "first_name": "Erika",
        "last_name": "Mustermann", "birth_date": "1980-05-17", "email": "erika@example.org",
        "address": {"recipient": "Erika Mustermann", "street": "Heidestraße 17",
                    "postal_code": "51147", "city": "Köln"},
    }  # fmt: skip
    assert httpx.post(f"{identity}/identity/registrations", json=registration, timeout=30
                      ).status_code == 202  # fmt: skip
    login = httpx.post(f"{identity}/identity/login",
                       json={"username": username, "password": PASSWORD}, timeout=30)  # fmt: skip
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


def _log_in(page: Page, platform: Processes, username: str) -> None:
    page.goto(f"{platform.urls['console']}/console/login")
    page.get_by_label("Benutzername").fill(username)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_label("Einmalcode aus der Authenticator-App").fill(
        totp(TOTP_SECRET, time_step(datetime.now(UTC)))
    )
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_test_id("operator")).to_have_text(username)


def _consumed(platform: Processes, bearer: dict[str, str]) -> bool:
    """The contracts consumer group has committed everything on the upstream topic."""
    lags = httpx.get(f"{platform.urls['console']}/console/api/lag", headers=bearer, timeout=30)
    rows = [r for r in lags.json()
            if r["group"] == platform.prefix + GROUP
            and r["topic"] == platform.prefix + topics.UPSTREAM_CONTRACTS]  # fmt: skip
    return bool(rows) and all(r["lag"] == 0 for r in rows)


def test_ops1_operator_replays_a_fixed_poison_message_once_and_customers_are_refused(
    platform: Processes, browser: Browser
) -> None:
    console = platform.urls["console"]
    create_operator(platform, "ops-e2e", PASSWORD, TOTP_SECRET)
    page = browser.new_page()

    # A customer's token, signed by the same identity, opens nothing.
    customer = _customer_token(platform)
    refused = httpx.get(f"{console}/console/api/overview",
                        headers={"Authorization": f"Bearer {customer}"}, timeout=30)  # fmt: skip
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    page.context.add_cookies([{"name": "portal_console", "value": customer,
                               "url": f"{console}/console/"}])  # fmt: skip
    answer = page.goto(f"{console}/console/")
    assert answer is not None
    assert answer.status == 403
    expect(page.get_by_test_id("refused")).to_contain_text("nur für Betreiber")
    page.context.clear_cookies()
    assert httpx.get(f"{console}/console/api/overview", timeout=30).status_code == 401

    _log_in(page, platform, "ops-e2e")
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "portal_console")
    bearer = {"Authorization": f"Bearer {token}"}

    # A payment for a policy that was not issued yet: contracts dead-letters it.
    number = unique("HR").upper()
    holder = unique("C")
    paid = premium_paid(number, 12_000, datetime(2026, 3, 2, 9, tzinfo=UTC))
    _publish(platform.prefix, "/collections", paid)

    dlq = platform.prefix + dead_letter_topic(GROUP)
    row = page.get_by_test_id("dead-letters").get_by_role("row").filter(has_text=dlq)
    expect(row.get_by_role("cell").nth(1)).to_have_text("1")
    expect(page.get_by_test_id("services")).to_contain_text("contracts")
    expect(page.get_by_test_id("events-total")).not_to_have_text("0")

    # The cause is fixed: the policy is issued; contracts records it.
    issued = policy_issued(number, (holder,), date(2026, 3, 1), datetime(2026, 3, 1, tzinfo=UTC))
    _publish(platform.prefix, "/policy-admin", issued)
    eventually(lambda: _events_of(platform.prefix, "PolicyIssued.v1", 1))

    page.get_by_role("link", name="Dead Letters").click()
    page.get_by_role("link", name=re.compile(re.escape(dlq))).click()
    expect(page.get_by_test_id("reason")).to_contain_text("policy_not_found")
    expect(page.get_by_test_id("event")).to_contain_text(paid.payment_id)
    page.get_by_label(re.compile("Die Ursache ist behoben")).check()
    page.get_by_role("button", name="Erneut einspielen").click()
    expect(page.get_by_test_id("replay-results")).to_contain_text("replayed")

    eventually(lambda: _events_of(platform.prefix, "PremiumPaid.v1", 2))
    # Replayed a second time (an operator's double click): the inbox absorbs it.
    ref = httpx.get(f"{console}/console/api/dead-letters", headers=bearer, timeout=30).json()[0]
    again = httpx.post(f"{console}/console/api/dead-letters/replay", headers=bearer,
                       json={"refs": [ref["ref"]]}, timeout=30)  # fmt: skip
    assert again.json()[0]["ok"] is True
    eventually(lambda: _consumed(platform, bearer))
    assert _stored_payments(platform, paid.payment_id) == 1

    page.get_by_role("link", name="Kundenhistorie").click()
    page.get_by_label("Kundennummer").fill(holder)
    page.get_by_label(re.compile("Anlass der Abfrage")).fill("Rückfrage zur Zahlung")
    page.get_by_role("button", name="Anzeigen").click()
    history = page.get_by_test_id("history")
    expect(history.get_by_role("row").filter(has_text="PremiumPaid")).to_have_count(1)
    expect(history.get_by_role("row").filter(has_text="PolicyIssued")).to_have_count(1)

    page.goto(f"{console}/console/dead-letters/{ref['ref']}")
    expect(page.get_by_test_id("replays")).to_contain_text("ops-e2e")
    expect(page.get_by_test_id("replays").get_by_role("listitem")).to_have_count(2)
