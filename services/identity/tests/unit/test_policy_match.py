"""ID-3 with the policyholders' details from contracts' events: the registrant must be the
sole policyholder by name (Unicode-normalised, case-insensitive) and birth date; the
letter goes to the address on the policy, never to the one typed at registration. A
mismatch is answered like any registration and sends no letter (enumeration safety).
Policies from older events without details keep the number-only match (README)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from contracts_schemas import identity as ev
from contracts_schemas.common import Carrier, PostalAddress
from contracts_schemas.contracts import PolicyholdersChanged
from identity import commands as c
from identity_world import ADDRESS, PASSWORD, POLICY_ADDRESS, START, World, holder, policy_issued

AVAG = Carrier.ALLIANZ_VERSICHERUNGS_AG


async def register_as(
    world: World, first: str = "Erika", last: str = "Mustermann",
    birth: date = date(1980, 5, 17), number: str = "KV-10",
) -> str:  # fmt: skip
    outcome = await world.run(world.identity.register, c.Register(
        username="erika", password=PASSWORD, first_name=first, last_name=last,
        birth_date=birth, address=ADDRESS, email="erika@example.org", policy_number=number,
    ))  # fmt: skip
    return str(outcome.status)


async def test_id3_same_name_and_birth_date_gets_the_letter_at_the_policy_address(
    world: World,
) -> None:
    await world.run(world.identity.record_policies,
                    [policy_issued("KV-10", ("P-10",), AVAG, (holder("P-10"),))])  # fmt: skip
    assert await register_as(world) == "registration_received"
    assert world.customer_id() == "P-10"
    letter = world.last(ev.ActivationCodeIssued)
    assert letter.customer_id == "P-10"
    assert letter.address == POLICY_ADDRESS  # not the address typed at registration
    assert letter.address.street != ADDRESS.street


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("ERIKA", "mustermann"),  # case
        ("  Erika ", "Mustermann"),  # surrounding space
        ("Erika", "MUSTERMANN"),
    ],
)
async def test_id3_names_compare_case_insensitively(world: World, first: str, last: str) -> None:
    await world.run(world.identity.record_policies,
                    [policy_issued("KV-10", ("P-10",), AVAG, (holder("P-10"),))])  # fmt: skip
    await register_as(world, first, last)
    assert world.last(ev.ActivationCodeIssued).address == POLICY_ADDRESS


async def test_id3_names_compare_unicode_normalised(world: World) -> None:
    composed, decomposed = "J\u00fcrgen", "Ju\u0308rgen"  # ü as one or two code points
    await world.run(world.identity.record_policies, [policy_issued(
        "KV-11", ("P-11",), AVAG, (holder("P-11", composed, "Strauß"),))])  # fmt: skip
    await register_as(world, decomposed, "STRAUSS", number="KV-11")  # ß casefolds to ss
    assert world.customer_id() == "P-11"
    assert world.last(ev.ActivationCodeIssued).customer_id == "P-11"


@pytest.mark.parametrize(
    ("first", "last", "birth"),
    [
        ("Erika", "Mustermann", date(1980, 5, 18)),  # another birth date
        ("Erik", "Mustermann", date(1980, 5, 17)),  # another given name
        ("Erika", "Musterfrau", date(1980, 5, 17)),  # another family name
        ("Mustermann", "Erika", date(1980, 5, 17)),  # names swapped
    ],
)
async def test_id3_a_mismatch_gets_no_letter_and_the_same_answer(
    world: World, first: str, last: str, birth: date
) -> None:
    await world.run(world.identity.record_policies,
                    [policy_issued("KV-10", ("P-10",), AVAG, (holder("P-10"),))])  # fmt: skip
    assert await register_as(world, first, last, birth) == "registration_received"
    assert not world.published(ev.ActivationCodeIssued)
    assert world.customer_id().startswith("cust-")  # the limited portal, not P-10
    assert world.uow.accounts.rows.get("P-10") is None
    assert world.published(ev.EmailVerificationCodeIssued)  # as for any registration


async def test_id3_joint_policyholders_get_no_letter_even_when_one_matches(world: World) -> None:
    details = (holder("P-12"), holder("P-13", "Max"))
    await world.run(world.identity.record_policies,
                    [policy_issued("KV-12", ("P-12", "P-13"), AVAG, details)])  # fmt: skip
    assert await register_as(world, number="KV-12") == "registration_received"
    assert not world.published(ev.ActivationCodeIssued)


async def test_id3_older_events_without_details_keep_the_number_only_match(world: World) -> None:
    """The documented fallback: the letter goes to the address given at registration."""
    await world.run(world.identity.record_policies, [policy_issued("KV-14", ("P-14",), AVAG)])
    await register_as(world, "Jemand", "Anders", date(1999, 1, 1), number="KV-14")
    letter = world.last(ev.ActivationCodeIssued)
    assert letter.customer_id == "P-14"
    assert letter.address.street == ADDRESS.street


async def test_id3_a_re_requested_letter_also_goes_to_the_newest_policy_address(
    world: World,
) -> None:
    moved = PostalAddress(recipient="Erika Mustermann", street="Neue Gasse 9",
                          postal_code="20095", city="Hamburg")  # fmt: skip
    await world.run(world.identity.record_policies,
                    [policy_issued("KV-15", ("P-15",), AVAG, (holder("P-15"),))])  # fmt: skip
    await register_as(world, number="KV-15")
    await world.run(world.identity.record_policies, [PolicyholdersChanged(
        event_id=uuid.uuid4(), aggregate_id="pol-KV-15", aggregate_version=2,
        occurred_at=START + timedelta(days=1), policy_id="pol-KV-15",
        policyholder_ids=("P-15",), effective_date=date(2026, 4, 1),
        policyholders=(holder("P-15", address=moved),),
    )])  # fmt: skip
    world.advance(days=91)
    await world.run(world.identity.request_activation_letter, c.RequestActivationLetter("P-15"))
    assert world.last(ev.ActivationCodeIssued).address == moved


async def test_id3_holders_changed_without_details_keeps_those_of_remaining_holders(
    world: World,
) -> None:
    await world.run(world.identity.record_policies, [
        policy_issued("KV-16", ("P-16", "P-17"), AVAG, (holder("P-16"), holder("P-17", "Max"))),
        PolicyholdersChanged(event_id=uuid.uuid4(), aggregate_id="pol-KV-16",
            aggregate_version=2, occurred_at=START, policy_id="pol-KV-16",
            policyholder_ids=("P-16",), effective_date=date(2026, 1, 1)),
    ])  # fmt: skip
    policy = world.uow.policies.rows["pol-KV-16"]
    assert [h.customer_id for h in policy.holders] == ["P-16"]
    await register_as(world, "Max", number="KV-16")  # Max is no longer a holder
    assert not world.published(ev.ActivationCodeIssued)
