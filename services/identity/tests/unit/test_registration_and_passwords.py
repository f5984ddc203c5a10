"""ID-1 registration, ID-2 passwords, ID-3 activation letters, on the in-memory UoW."""

from __future__ import annotations

from datetime import date

import pytest
from contracts_schemas import identity as ev
from contracts_schemas.common import Carrier
from contracts_schemas.contracts import PolicyCancelled, PolicyholdersChanged, PolicyIssued
from identity import commands as c
from identity.adapters.security import Argon2Hasher
from identity.domain.model import username_key
from identity.domain.rules import IdentityError, Reason
from identity.handlers import Refused
from identity_world import ADDRESS, PASSWORD, World, policy_issued


async def test_id1_registration_publishes_the_customer_and_an_email_code(world: World) -> None:
    outcome = await world.register()
    assert outcome.status == "registration_received"
    registered = world.last(ev.CustomerRegistered)
    assert registered.birth_date == date(1980, 5, 17)
    assert registered.address.city == "Köln"
    assert registered.mobile is None
    code = world.last(ev.EmailVerificationCodeIssued)
    assert code.email == "erika@example.org"
    assert not world.published(ev.ActivationCodeIssued)  # ID-1: non-customer, limited portal
    profile = await world.run(world.identity.profile, c.CustomerQuery(registered.customer_id))
    assert profile.data["limited_portal"] is True


async def test_id1_email_is_verified_by_the_code_sent_to_it(world: World) -> None:
    await world.register()
    customer = world.customer_id()
    wrong = await world.run(world.identity.verify_email, c.VerifyEmail(customer, "AAAA-AAAA"))
    assert isinstance(wrong, Refused)
    code = world.last(ev.EmailVerificationCodeIssued).code
    assert (await world.run(world.identity.verify_email, c.VerifyEmail(customer, code))).status
    assert world.last(ev.EmailVerified).email == "erika@example.org"


@pytest.mark.parametrize("second", ["ERIKA", "Erika", "ｅｒｉｋａ", " erika "])
async def test_id1_usernames_are_unique_case_insensitively_after_nfkc(
    world: World, second: str
) -> None:
    await world.register("erika")
    outcome = await world.register(second, email="other@example.org")
    assert outcome.status == "registration_received"  # same answer: no enumeration
    refused = world.last(ev.RegistrationNotCompleted)
    assert (refused.email, refused.reason) == ("other@example.org", "username_taken")
    assert len(world.uow.accounts.rows) == 1


def test_id1_username_key_folds_case_and_compatibility_forms() -> None:
    assert username_key("ＳＴＲＡＳＳＥ") == username_key("strasse") == username_key("Straße")


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("kurz-1234", "mindestens 12"),
        ("password1234", "Datenlecks"),  # in the shipped list of breached passwords
        ("aaaaaaaaaaaaaaaa", "Datenlecks"),
        ("erika-Kiefernzapfen", "Benutzernamen"),
        ("Mustermann!Zapfen91", "Benutzernamen"),
        ("Zapfen17.05.1980!x", "Geburtsdatum"),
        ("abcabcabcabcabc1", "erraten"),  # not in the list, zxcvbn: 1
    ],
)
async def test_id2_refused_passwords(world: World, password: str, why: str) -> None:
    with pytest.raises(IdentityError) as refused:
        await world.register(password=password)
    assert refused.value.reason is Reason.WEAK_PASSWORD
    assert why in refused.value.detail
    assert not world.uow.accounts.rows


async def test_id2_long_passphrases_without_composition_rules_are_accepted(world: World) -> None:
    passphrase = "wenn der wind ueber die felder streicht singen die kraniche leise lieder"
    assert len(passphrase) >= 64
    await world.register(password=passphrase)
    assert (await world.login(password=passphrase)).status == "authenticated"  # type: ignore[union-attr]


async def test_id2_passwords_are_argon2id_and_rehashed_when_parameters_rise(world: World) -> None:
    await world.register()
    stored = world.uow.accounts.rows[world.customer_id()].password_hash
    assert stored.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in stored
    world.identity.hasher = Argon2Hasher(memory_kib=24_576, time_cost=3)
    await world.tokens()
    assert "m=24576,t=3,p=1" in world.uow.accounts.rows[world.customer_id()].password_hash


def test_id2_parameters_below_owasp_are_refused() -> None:
    with pytest.raises(ValueError, match="OWASP"):
        Argon2Hasher(memory_kib=8_192, time_cost=1)


async def test_id3_sole_policyholder_gets_an_activation_letter_valid_90_days(world: World) -> None:
    await world.run(
        world.identity.record_policies,
        [policy_issued("KV-1", ("P-1",), Carrier.ALLIANZ_VERSICHERUNGS_AG)],
    )
    await world.register(policy_number="KV-1")
    assert world.customer_id() == "P-1"
    letter = world.last(ev.ActivationCodeIssued)
    assert letter.address.street == ADDRESS.street
    assert (letter.expires_at - world.clock.now()).days == 90
    raw = letter.code.replace("-", "")
    assert len(raw) == 12
    assert len(set(raw)) > 1
    stored = world.uow.codes.rows.values()
    assert all(letter.code not in k.code_hash for k in stored)  # stored hashed only


@pytest.mark.parametrize(
    "events",
    [
        [policy_issued("KV-2", ("P-1", "P-2"), Carrier.ALLIANZ_VERSICHERUNGS_AG)],
        [policy_issued("KV-2", ("P-1",), Carrier.ALLIANZ_VERSICHERUNGS_AG)],
    ],
)
async def test_id3_no_letter_unless_the_policy_has_one_policyholder_and_is_in_force(
    world: World, events: list[PolicyIssued]
) -> None:
    import uuid

    from identity_world import START

    stream = list(events)
    if len(events[0].policyholder_ids) == 1:  # second case: cancelled, then joint holder
        stream.append(PolicyCancelled(
            event_id=uuid.uuid4(), aggregate_id="pol-KV-2", aggregate_version=2,
            occurred_at=START, policy_id="pol-KV-2", effective_date=date(2026, 1, 1),
            policyholder_ids=("P-1",),
        ))  # fmt: skip
    await world.run(world.identity.record_policies, stream)
    outcome = await world.register(policy_number="KV-2")
    assert outcome.status == "registration_received"  # same answer as a match
    assert not world.published(ev.ActivationCodeIssued)
    assert world.customer_id().startswith("cust-")


async def test_id3_policyholders_changed_moves_the_match(world: World) -> None:
    import uuid

    from identity_world import START

    await world.run(world.identity.record_policies, [
        policy_issued("KV-3", ("P-1", "P-2"), Carrier.ALLIANZ_VERSICHERUNGS_AG),
        PolicyholdersChanged(event_id=uuid.uuid4(), aggregate_id="pol-KV-3",
            aggregate_version=2, occurred_at=START, policy_id="pol-KV-3",
            policyholder_ids=("P-2",), effective_date=date(2026, 1, 1)),
    ])  # fmt: skip
    await world.register(policy_number="KV-3")
    assert world.customer_id() == "P-2"


async def test_id3_the_code_activates_and_a_wrong_code_counts_as_failed_login(
    world: World,
) -> None:
    await world.run(
        world.identity.record_policies,
        [policy_issued("KV-4", ("P-4",), Carrier.ALLIANZ_VERSICHERUNGS_AG)],
    )
    await world.register(policy_number="KV-4")
    code = world.last(ev.ActivationCodeIssued).code
    wrong = await world.run(world.identity.activate, c.Activate("P-4", "ZZZZ-ZZZZ-ZZZZ"))
    assert isinstance(wrong, Refused)
    assert wrong.error.reason is Reason.CODE_INVALID
    assert world.uow.throttles.rows[f"user:{username_key('erika')}"].failures == 1
    assert world.last(ev.LoginFailed).customer_id == "P-4"
    assert (await world.run(world.identity.activate, c.Activate("P-4", code.lower()))).status
    assert world.last(ev.AccountActivated).customer_id == "P-4"
    profile = await world.run(world.identity.profile, c.CustomerQuery("P-4"))
    assert profile.data["limited_portal"] is False


async def test_id3_an_expired_code_can_be_re_requested_but_not_a_valid_one(world: World) -> None:
    await world.run(
        world.identity.record_policies,
        [policy_issued("KV-5", ("P-5",), Carrier.ALLIANZ_VERSICHERUNGS_AG)],
    )
    await world.register(policy_number="KV-5")
    first = world.last(ev.ActivationCodeIssued).code
    with pytest.raises(IdentityError) as pending:
        await world.run(world.identity.request_activation_letter,
                        c.RequestActivationLetter("P-5"))  # fmt: skip
    assert pending.value.reason is Reason.CONFLICT
    world.advance(days=91)
    expired = await world.run(world.identity.activate, c.Activate("P-5", first))
    assert isinstance(expired, Refused)
    await world.run(world.identity.request_activation_letter, c.RequestActivationLetter("P-5"))
    second = world.last(ev.ActivationCodeIssued).code
    assert second != first
    assert (await world.run(world.identity.activate, c.Activate("P-5", second))).status


async def test_id3_an_activation_code_is_not_a_password(world: World) -> None:
    await world.run(
        world.identity.record_policies,
        [policy_issued("KV-6", ("P-6",), Carrier.ALLIANZ_VERSICHERUNGS_AG)],
    )
    await world.register(policy_number="KV-6")
    code = world.last(ev.ActivationCodeIssued).code
    assert isinstance(await world.login(password=code), Refused)
    assert code != PASSWORD
