"""ID-3 across services on the real broker and database: policy administration issues a
policy with its holder's details to contracts; contracts' PolicyIssued carries them over
Kafka into identity's projection; a registration with the holder's name and birth date
gets the activation letter addressed to the policy's address, one with another birth
date gets no letter and the very same answer."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from contracts_schemas import identity as ev
from contracts_schemas.common import (
    Carrier,
    PolicyholderDetails,
    PostalAddress,
    ProductLine,
)
from contracts_schemas.upstream import PolicyIssuedUpstream
from glue_harness import Glue, glue, until
from identity_world import PASSWORD

pytestmark = pytest.mark.integration

ON_POLICY = PostalAddress(recipient="Frau Erika Mustermann", street="Am Policenweg 3",
                          postal_code="80331", city="München")  # fmt: skip
TYPED = {"recipient": "Erika Mustermann", "street": "Heidestraße 17", "postal_code": "51147",
         "city": "Köln"}  # fmt: skip


def issued_upstream(number: str, holder_id: str) -> PolicyIssuedUpstream:
    return PolicyIssuedUpstream(
        message_id=uuid.uuid4().hex, source_system="policy-admin",
        occurred_at=datetime.now(UTC) - timedelta(days=1), policy_number=number,
        product_line=ProductLine.LIABILITY, carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG,
        policyholder_ids=(holder_id,), start_date=date(2026, 1, 1),
        policyholders=(PolicyholderDetails(
            customer_id=holder_id, given_name="Erika", family_name="Mustermann",
            birth_date=date(1980, 5, 17), postal_address=ON_POLICY,
        ),),
    )  # fmt: skip


def registration(username: str, number: str, birth_date: str, **extra: Any) -> dict[str, Any]:
    return {
        "username": username, "password": PASSWORD, "first_name": "erika",
        "last_name": "MUSTERMANN", "birth_date": birth_date, "email": f"{username}@example.org",
        "address": TYPED, "policy_number": number, **extra,
    }  # fmt: skip


async def issue_and_project(g: Glue, number: str, holder_id: str) -> None:
    posted = await g.contracts_http.post(
        "/internal/upstream/policies",
        json=issued_upstream(number, holder_id).model_dump(mode="json"),
        headers=g.policy_admin(),
    )
    assert posted.status_code == 201, posted.text

    async def projected() -> bool:
        async with g.identity.runtime.pool.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT holders_enc IS NOT NULL FROM policies WHERE policy_number = $1", number
            ))  # fmt: skip

    await until(projected)


async def test_id3_letter_to_the_policy_address_on_a_match_and_none_on_another_birth_date(
) -> None:  # fmt: skip
    async with glue(with_mtan=False) as g:
        await issue_and_project(g, "PHV-ID3-1", "P-ID3-1")

        wrong = await g.identity_http.post(
            "/identity/registrations", json=registration("falsch", "PHV-ID3-1", "1980-05-18")
        )
        right = await g.identity_http.post(
            "/identity/registrations", json=registration("erika", "PHV-ID3-1", "1980-05-17")
        )
        # Enumeration safety: the same status and body, whether or not it matched.
        assert wrong.status_code == right.status_code == 202
        assert wrong.json() == right.json() == {"status": "registration_received"}

        letters = await until(lambda: g.codes(ev.ActivationCodeIssued))
        assert [letter.customer_id for letter in letters] == ["P-ID3-1"]
        assert letters[0].address == ON_POLICY  # never the address typed at registration

        # The mismatching registration's own events (same transaction as a letter would
        # have been) are published: it had no letter.
        async with g.identity.runtime.pool.acquire() as conn:
            other = await conn.fetchval(
                "SELECT customer_id FROM accounts WHERE username_key = 'falsch'")  # fmt: skip
        assert other.startswith("cust-")

        async def its_email_code() -> list[Any]:
            sent = await g.codes(ev.EmailVerificationCodeIssued, at_least=3)
            return [e for e in sent if e.customer_id == other]

        await until(its_email_code)
        letters = await g.codes(ev.ActivationCodeIssued, at_least=3)
        assert [letter.customer_id for letter in letters] == ["P-ID3-1"]
