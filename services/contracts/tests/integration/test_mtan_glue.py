"""ID-6/CT-4 across services: a real identity app (over HTTP) and a real contracts app on
the real PostgreSQL and Kafka. The customer asks contracts for the mTAN of a new IBAN,
contracts has identity send it (contracts' own credentials, operation `mtan`), the
customer confirms the SMS code at identity, and the change is recorded; a code bound to
another IBAN is refused. Only a system granted `mtan` may call identity's mTAN API."""

from __future__ import annotations

from typing import Any

import pytest
from contracts.domain.iban import parse_iban
from contracts_schemas import identity as ev
from glue_harness import (
    CONTRACTS_SECRET,
    NOTIFIER_SECRET,
    Glue,
    glue,
    issue_and_project,
    registration,
    until,
)
from identity_world import PASSWORD
from servicekit.auth import basic_authorization

pytestmark = pytest.mark.integration

IBAN = "DE89 3704 0044 0532 0130 00"
OTHER_IBAN = "DE02 1203 0000 0000 2020 51"
MOBILE = "+4915112345678"


async def customer_with_second_factor(g: Glue, number: str, holder_id: str) -> dict[str, str]:
    """Registered (ID-3 match), activated, SMS factor on, logged in with the SMS code."""
    await issue_and_project(g, number, holder_id)
    answer = await g.identity_http.post(
        "/identity/registrations", json=registration("erika", number, "1980-05-17")
    )
    assert answer.status_code == 202, answer.text
    letter = (await until(lambda: g.codes(ev.ActivationCodeIssued)))[0]
    login = await g.identity_http.post(
        "/identity/login", json={"username": "erika", "password": PASSWORD}
    )
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    activated = await g.identity_http.post(
        "/identity/activation", json={"code": letter.code}, headers=bearer
    )
    assert activated.status_code == 200, activated.text
    started = await g.identity_http.post(
        "/identity/two-factor", json={"mobile": MOBILE}, headers=bearer
    )
    assert started.status_code == 200, started.text
    code = (await until(lambda: g.codes(ev.MtanRequested)))[0].code
    confirmed = await g.identity_http.post(
        "/identity/two-factor/confirm", json={"code": code}, headers=bearer
    )
    assert confirmed.status_code == 200, confirmed.text
    step = (await g.identity_http.post(
        "/identity/login", json={"username": "erika", "password": PASSWORD})).json()  # fmt: skip
    sms = (await until(lambda: g.codes(ev.LoginCodeRequested)))[0].code
    second = await g.identity_http.post(
        "/identity/login/sms", json={"login_ticket": step["login_ticket"], "code": sms}
    )
    assert second.status_code == 200, second.text
    return {"Authorization": f"Bearer {second.json()['access_token']}"}


async def bank_mtan_code(g: Glue, mtan_count: int) -> str:
    """The SMS code of the newest bank-details mTAN, from identity's codes topic."""

    async def sent() -> list[Any]:
        found = await g.codes(ev.MtanRequested, at_least=mtan_count)
        return [m for m in found if m.purpose == "bank_details_change"]

    return str((await until(sent))[-1].code)


async def test_id6_ct4_bank_details_with_an_mtan_from_identity_and_not_for_another_iban() -> None:
    async with glue() as g:
        bearer = await customer_with_second_factor(g, "PHV-MTAN-1", "P-MTAN-1")

        async def visible() -> bool:  # contracts learnt AccountActivated from Kafka (ID-3)
            seen = await g.contracts_http.get("/contracts", headers=bearer)
            return seen.status_code == 200 and [c["policy_id"] for c in seen.json()] == [
                "PHV-MTAN-1"
            ]

        await until(visible)

        asked = await g.contracts_http.post(
            "/contracts/PHV-MTAN-1/bank-details/mtan", json={"iban": IBAN}, headers=bearer
        )
        assert asked.status_code == 201, asked.text
        mtan_id = asked.json()["mtan_id"]
        assert asked.json()["confirm_path"] == f"/identity/mtans/{mtan_id}/confirm"
        code = await bank_mtan_code(g, mtan_count=2)
        assert code not in asked.text  # the code travels only by SMS
        confirmed = await g.identity_http.post(
            asked.json()["confirm_path"], json={"code": code}, headers=bearer
        )
        assert confirmed.status_code == 200, confirmed.text

        other = await g.contracts_http.put(
            "/contracts/PHV-MTAN-1/bank-details",
            json={"iban": OTHER_IBAN, "mtan_id": mtan_id}, headers=bearer,
        )  # fmt: skip
        assert other.status_code == 403, other.text
        assert other.json()["title"] == "mtan_mismatch"

        changed = await g.contracts_http.put(
            "/contracts/PHV-MTAN-1/bank-details",
            json={"iban": IBAN, "mtan_id": mtan_id}, headers=bearer,
        )  # fmt: skip
        assert changed.status_code == 204, changed.text
        details = (await g.contracts_http.get("/contracts/PHV-MTAN-1", headers=bearer)).json()
        assert details["bank_details"]["iban_masked"] == parse_iban(IBAN).masked
        async with g.contracts.runtime.pool.acquire() as conn:
            types = await conn.fetch(
                "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version",
                "PHV-MTAN-1",
            )
        assert [r["event_type"].rsplit(".", 2)[-2] for r in types] == [
            "PolicyIssued", "BankDetailsChanged",
        ]  # fmt: skip

        # The mTAN is used up: identity confirms it no more.
        consume = {"customer_id": "P-MTAN-1", "reference": "anything"}
        contracts = {"Authorization": basic_authorization("contracts", CONTRACTS_SECRET)}
        notifier = {"Authorization": basic_authorization("notifier", NOTIFIER_SECRET)}
        used = await g.identity_http.post(
            f"/internal/identity/mtans/{mtan_id}/consume", json=consume, headers=contracts
        )
        assert used.json()["confirmed"] is False
        # OWASP API5: a system without the `mtan` operation is refused.
        refused = await g.identity_http.post(
            f"/internal/identity/mtans/{mtan_id}/consume", json=consume, headers=notifier
        )
        assert refused.status_code == 403, refused.text
