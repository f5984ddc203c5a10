"""ID-3 across services on the real broker and database: policy administration issues a
policy with its holder's details to contracts; contracts' PolicyIssued carries them over
Kafka into identity's projection; a registration with the holder's name and birth date
gets the activation letter addressed to the policy's address, one with another birth
date gets no letter and the very same answer."""

from __future__ import annotations

from typing import Any

import pytest
from contracts_schemas import identity as ev
from glue_harness import ON_POLICY, glue, issue_and_project, registration, until

pytestmark = pytest.mark.integration


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
