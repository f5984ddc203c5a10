"""Issue 9 end to end, through the gateway only: the customer's whole journey with tokens
that identity issued, codes from the print queue, the SMTP sink and the SMS provider
stand-in (ID-1, ID-3, ID-4, ID-5, ID-6, ID-9, LOY-9, GW-1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from e2e_factories import PASSWORD, issued_to, new_person, premium_paid
from e2e_harness import (
    Platform,
    answer,
    code_in,
    eventually,
    eventually_async,
    log_in,
    log_in_with_sms,
    mail_code,
    next_sms_code,
    problem,
    sms_codes,
)
from servicekit.clock import BERLIN

pytestmark = pytest.mark.e2e
IBAN = "DE89370400440532013000"
OTHER_IBAN = "DE02120300000000202051"


def _first_of_next_month(now: datetime) -> datetime:
    local = now.astimezone(BERLIN)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, 12, 0, tzinfo=BERLIN)


async def test_id1_to_id9_the_whole_journey_through_the_gateway(
    platform: Platform, publish: Any
) -> None:
    """Register with a policy number -> the letter in the print queue carries the code ->
    log in -> activate -> see the contract -> enable 2FA -> log in with password + SMS code
    -> change bank details with an mTAN -> cancel -> loyalty shows the forfeit and the
    confirmation e-mail arrives."""
    person = new_person()
    number = f"HR-{person.holder_id[2:10].upper()}"
    now = datetime.now().astimezone()
    await publish("/policy-admin", issued_to(number, person, now))
    await eventually_async(lambda: platform.count(
        "identity", "SELECT count(*) FROM policies WHERE policy_number = $1", number))  # fmt: skip

    # ID-1/ID-3: registration names the policy; the answer tells nothing more
    with platform.gateway() as portal:
        registered = portal.post("/identity/registrations", json=person.registration(number))
    assert registered.status_code == 202, registered.text

    # the activation letter lies in the print queue, addressed to the registered address
    letters = eventually(lambda: platform.letters(person.recipient))
    manifest, letter = letters[-1]
    assert manifest["recipient"] == [person.recipient, "Heidestraße 17", "51147 Köln"]
    assert "Ihr Aktivierungscode" in letter
    code = code_in(letter)

    # ID-4: log in (the first time: no previous login), verify the e-mail, activate
    tokens = log_in(platform, person.username, PASSWORD)
    assert tokens["status"] == "authenticated"
    assert tokens["previous_login_at"] is None
    with platform.gateway(tokens["access_token"]) as portal:
        answer(
            portal.post("/identity/email/verify", json={"code": mail_code(platform, person.email)})
        )
        wrong = portal.post("/identity/activation", json={"code": "ZZZZZZZZZZZZ"})
        problem(wrong, 400)
        answer(portal.post("/identity/activation", json={"code": code}))
        me = answer(portal.get("/identity/me"))
        assert me["activated"] is True
        assert me["customer_id"] == person.holder_id, "ID-3: the account is the policyholder's"

        # CT-3: the contract is shown once contracts learnt of the activation
        def contract() -> list[dict[str, Any]]:
            listed: list[dict[str, Any]] = answer(portal.get("/contracts"))  # type: ignore[assignment]
            return [c for c in listed if c["policy_number"] == number]

        policy_id = eventually(contract)[0]["policy_id"]
        answer(portal.get(f"/contracts/{policy_id}"))

        # loyalty: enrolled, a premium paid, credited by the next month's run
        def enrolled() -> bool:
            response = portal.post("/loyalty/enrolment")
            assert response.status_code in (201, 409, 422), response.text
            return response.status_code in (201, 409)

        eventually(enrolled)
    # LOY-2: a payment after joining counts
    await publish("/collections", premium_paid(number, 12_050, datetime.now().astimezone()))
    run_on = _first_of_next_month(now)
    with platform.gateway(tokens["access_token"]) as portal:
        pending = eventually(lambda: answer(portal.get("/loyalty/statement"))["pending"])
    assert pending[0]["run_on"] == run_on.date().isoformat(), "LOY-2: credited next month"
    try:
        platform.set_time(run_on)
        with platform.as_system("loyalty", "operators") as operators:
            job = operators.post(
                "/internal/loyalty/jobs/monthly",
                params={"business_date": run_on.date().isoformat()},
            )
            assert job.status_code == 200, job.text
        with platform.gateway(tokens["access_token"]) as portal:
            assert answer(portal.get("/loyalty/statement"))["balance"] == 120
    finally:
        platform.wall_time()

    # ID-5: two-factor on - the code goes to the new mobile number - then log in again
    with platform.gateway(tokens["access_token"]) as portal:
        seen = len(sms_codes(platform, person.mobile, "mTAN"))
        answer(portal.post("/identity/two-factor", json={"mobile": person.mobile}))
        confirm = next_sms_code(platform, person.mobile, "mTAN", seen)
        assert answer(portal.post("/identity/two-factor/confirm", json={"code": confirm}))[
            "login_again"
        ]
    strong = log_in_with_sms(platform, person, PASSWORD)  # asserts the SMS step
    assert strong["acr"] == "urn:portal:acr:2fa"
    assert strong["previous_login_at"] is not None, "ID-4: the previous login is told"

    # CT-4/ID-6: new bank details need an mTAN bound to this policy and this IBAN
    with platform.gateway(strong["access_token"]) as portal:
        seen = len(sms_codes(platform, person.mobile, "mTAN"))
        sent = answer(portal.post(f"/contracts/{policy_id}/bank-details/mtan",
                                  json={"iban": IBAN}), 201)  # fmt: skip
        mtan = next_sms_code(platform, person.mobile, "mTAN", seen)
        answer(portal.post(sent["confirm_path"], json={"code": mtan}))
        other_iban = portal.put(f"/contracts/{policy_id}/bank-details",
                                json={"iban": OTHER_IBAN, "mtan_id": sent["mtan_id"]})  # fmt: skip
        problem(other_iban, 403, 409, 422)  # confirmed for another IBAN: refused
        changed = portal.put(f"/contracts/{policy_id}/bank-details",
                             json={"iban": IBAN, "mtan_id": sent["mtan_id"]})  # fmt: skip
        assert changed.status_code == 204, changed.text
        details = answer(portal.get(f"/contracts/{policy_id}"))
        assert details["bank_details"]["iban_masked"] == "DE89 **** **** **** **** 00"
        again = portal.put(f"/contracts/{policy_id}/bank-details",
                           json={"iban": OTHER_IBAN, "mtan_id": sent["mtan_id"]})  # fmt: skip
        problem(again, 403, 409, 422)  # single use

    # ID-9: cancellation needs an mTAN when the second factor is on
    with platform.gateway(strong["access_token"]) as portal:
        seen = len(sms_codes(platform, person.mobile, "mTAN"))
        asked = answer(portal.post("/identity/cancellation", json={"current_password": PASSWORD}))
        assert asked["status"] == "mtan_required", asked
        mtan = next_sms_code(platform, person.mobile, "mTAN", seen)
        answer(portal.post(f"/identity/mtans/{asked['mtan_id']}/confirm", json={"code": mtan}))
        cancelled = answer(portal.post(
            "/identity/cancellation",
            json={"current_password": PASSWORD, "mtan_id": asked["mtan_id"]},
        ))  # fmt: skip
        assert cancelled["status"] == "account_cancelled", cancelled

        # LOY-9: the membership ends and every point is forfeited
        def forfeited() -> dict[str, Any] | None:
            statement = answer(portal.get("/loyalty/statement"))
            return statement if statement["membership"]["status"] == "ended" else None

        statement = eventually(forfeited)
        assert statement["balance"] == 0

    # the confirmation e-mail arrives (NT: AccountCancelled)
    mails = eventually(lambda: [s for s, _ in platform.mail_texts(person.email)
                                if s.startswith("Bestätigung Ihrer Kündigung")])  # fmt: skip
    assert len(mails) == 1
    # the account is gone: no login any more
    with platform.gateway() as portal:
        gone = portal.post("/identity/login", json={"username": person.username,
                                                    "password": PASSWORD})  # fmt: skip
    problem(gone, 401)
