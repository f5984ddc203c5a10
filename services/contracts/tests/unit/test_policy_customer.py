"""CT-4/ID-6/ID-3/CT-3: customers change bank details (with mTAN) and report a move."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from contracts.domain.errors import CommandRejected, ReasonCode
from contracts.domain.iban import InvalidIban, parse_iban
from contracts.domain.mtan import (
    BANK_DETAILS_MTAN_PURPOSE,
    MTAN_CONFIRMATION_MAX_AGE,
    MtanConfirmation,
    bank_details_mtan_reference,
)
from contracts.domain.policy import (
    ChangeBankDetails,
    DecisionContext,
    PolicyState,
    ReportMove,
    change_bank_details,
    deterministic_event_ids,
    evolve,
    report_move,
)
from contracts_schemas.common import PostalAddress, ProductLine
from contracts_schemas.contracts import BankDetailsChanged, MoveReported

NOW = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
GERMAN = "DE89 3704 0044 0532 0130 00"
OTHER_GERMAN = "DE02 1203 0000 0000 2020 51"
ANNA = "cust-anna"
NEW_HOME = PostalAddress(
    recipient="Anna Beispiel", street="Lindenstraße 5", postal_code="80331", city="München"
)


def ctx(key: str = "request-1", now: datetime = NOW) -> DecisionContext:
    return DecisionContext(new_event_id=deterministic_event_ids(key), now=now)


def confirmation(
    state: PolicyState,
    iban: str = GERMAN,
    *,
    customer_id: str = ANNA,
    purpose: str = BANK_DETAILS_MTAN_PURPOSE,
    confirmed: bool = True,
    confirmed_at: datetime | None = NOW - timedelta(seconds=20),
) -> MtanConfirmation:
    return MtanConfirmation(
        customer_id=customer_id,
        purpose=purpose,
        reference=bank_details_mtan_reference(state.policy_id, parse_iban(iban)),
        confirmed=confirmed,
        confirmed_at=confirmed_at,
    )


def change(
    state: PolicyState | None,
    iban: str = GERMAN,
    *,
    customer_id: str = ANNA,
    activated: bool = True,
    policy_id: str = "AS-1000",
) -> ChangeBankDetails:
    return ChangeBankDetails(
        customer_id=customer_id, account_activated=activated, policy_id=policy_id, iban=iban
    )


@pytest.fixture
def policy(upstream) -> PolicyState:
    return upstream.run(None, upstream.issued(holders=(ANNA,)))


# --------------------------------------------------------------------------- bank details


def test_ct4_bank_details_change_with_confirmed_mtan_records_only_the_masked_iban(
    policy,
) -> None:
    events = change_bank_details(policy, change(policy), confirmation(policy), ctx())

    assert len(events) == 1
    event = events[0]
    assert isinstance(event, BankDetailsChanged)
    assert event.iban_masked == "DE89 **** **** **** **** 00"
    assert "370400440532013000" not in event.model_dump_json()
    assert event.occurred_at == NOW
    assert event.aggregate_version == 2
    assert event.customer_ids == (ANNA,)
    after = evolve(policy, event)
    assert after.iban_masked == "DE89 **** **** **** **** 00"
    assert after.bank_details_changed_at == NOW


def test_ct4_full_iban_stays_out_of_the_command_repr(policy) -> None:
    assert "3704" not in repr(change(policy))


def test_id6_bank_details_change_without_mtan_is_refused(policy) -> None:
    with pytest.raises(CommandRejected) as refused:
        change_bank_details(policy, change(policy), None, ctx())
    assert refused.value.code is ReasonCode.MTAN_REQUIRED
    assert "mTAN" in refused.value.detail


def test_id6_unconfirmed_mtan_is_refused(policy) -> None:
    with pytest.raises(CommandRejected) as refused:
        change_bank_details(policy, change(policy), confirmation(policy, confirmed=False), ctx())
    assert refused.value.code is ReasonCode.MTAN_NOT_CONFIRMED


def test_id6_mtan_confirmed_for_another_iban_is_refused(policy) -> None:
    with pytest.raises(CommandRejected) as refused:
        change_bank_details(
            policy, change(policy, OTHER_GERMAN), confirmation(policy, GERMAN), ctx()
        )
    assert refused.value.code is ReasonCode.MTAN_MISMATCH


@pytest.mark.parametrize("wrong", [{"customer_id": "cust-mallory"}, {"purpose": "password_change"}])
def test_id6_mtan_of_another_customer_or_purpose_is_refused(policy, wrong) -> None:
    with pytest.raises(CommandRejected) as refused:
        change_bank_details(policy, change(policy), confirmation(policy, **wrong), ctx())
    assert refused.value.code is ReasonCode.MTAN_MISMATCH


@pytest.mark.parametrize(
    "confirmed_at",
    [None, NOW - MTAN_CONFIRMATION_MAX_AGE - timedelta(seconds=1), NOW + timedelta(minutes=5)],
)
def test_id6_stale_or_undated_mtan_confirmation_is_refused(policy, confirmed_at) -> None:
    with pytest.raises(CommandRejected) as refused:
        change_bank_details(
            policy, change(policy), confirmation(policy, confirmed_at=confirmed_at), ctx()
        )
    assert refused.value.code is ReasonCode.MTAN_EXPIRED


def test_id6_mtan_confirmation_must_carry_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        MtanConfirmation(
            customer_id=ANNA,
            purpose=BANK_DETAILS_MTAN_PURPOSE,
            reference="x",
            confirmed=True,
            confirmed_at=datetime(2026, 4, 1, 10, 0),
        )


def test_ct4_invalid_iban_is_refused_with_a_german_explanation(policy) -> None:
    with pytest.raises(InvalidIban) as refused:
        change_bank_details(policy, change(policy, "DE88370400440532013000"), None, ctx())
    assert refused.value.code is ReasonCode.IBAN_WRONG_CHECKSUM
    assert "Prüfziffer" in refused.value.detail


def test_ct4_iban_outside_sepa_cannot_be_used_for_direct_debit(policy) -> None:
    turkish = "TR33 0006 1005 1978 6457 8413 26"
    with pytest.raises(InvalidIban) as refused:
        change_bank_details(policy, change(policy, turkish), None, ctx())
    assert refused.value.code is ReasonCode.IBAN_NOT_SEPA
    assert "SEPA" in refused.value.detail


def test_ct4_austrian_and_dutch_accounts_are_accepted(policy) -> None:
    for key, iban, masked in [
        ("r-at", "AT61 1904 3002 3457 3201", "AT61 **** **** **** **01"),
        ("r-nl", "nl91abna0417164300", "NL91 **** **** **** 00"),
    ]:
        events = change_bank_details(
            policy, change(policy, iban), confirmation(policy, iban), ctx(key)
        )
        assert isinstance(events[0], BankDetailsChanged)
        assert events[0].iban_masked == masked


def test_ct4_a_repeated_request_with_the_same_idempotency_key_has_no_second_effect(
    policy,
) -> None:
    events = change_bank_details(policy, change(policy), confirmation(policy), ctx("req-42"))
    after = evolve(policy, events[0])

    assert change_bank_details(after, change(after), confirmation(after), ctx("req-42")) == []


def test_ct3_joint_policyholders_cannot_change_bank_details(upstream) -> None:
    state = upstream.run(None, upstream.issued(holders=(ANNA, "cust-ben")))
    with pytest.raises(CommandRejected) as refused:
        change_bank_details(state, change(state), confirmation(state), ctx())
    assert refused.value.code is ReasonCode.JOINT_POLICYHOLDERS


def test_ct3_a_stranger_gets_the_answer_for_an_unknown_policy(policy) -> None:
    with pytest.raises(CommandRejected) as for_stranger:
        change_bank_details(policy, change(policy, customer_id="cust-mallory"), None, ctx())
    with pytest.raises(CommandRejected) as for_unknown:
        change_bank_details(None, change(None, customer_id="cust-mallory"), None, ctx())

    assert for_stranger.value.code is ReasonCode.NOT_YET_ISSUED
    assert (for_stranger.value.code, for_stranger.value.detail) == (
        for_unknown.value.code,
        for_unknown.value.detail,
    )


def test_id3_a_customer_whose_account_is_not_activated_cannot_change_bank_details(
    policy,
) -> None:
    with pytest.raises(CommandRejected) as refused:
        change_bank_details(policy, change(policy, activated=False), confirmation(policy), ctx())
    assert refused.value.code is ReasonCode.ACCOUNT_NOT_ACTIVATED


def test_ct3_an_insured_person_of_a_bkv_sees_it_but_cannot_change_it(upstream) -> None:
    state = upstream.run(
        None,
        upstream.issued(
            product_line=ProductLine.COMPANY_HEALTH,
            holders=("employer-acme",),
            insured=(ANNA,),
            visible_to_insured=True,
        ),
    )
    with pytest.raises(CommandRejected) as refused:
        change_bank_details(state, change(state), confirmation(state), ctx())
    assert refused.value.code is ReasonCode.NOT_POLICYHOLDER
    assert "Versicherungsnehmer" in refused.value.detail


def test_ct4_bank_details_of_a_cancelled_contract_in_force_can_still_change(upstream) -> None:
    state = upstream.run(
        None,
        upstream.issued(holders=(ANNA,)),
        upstream.cancelled(effective_date=date(2026, 12, 31)),
    )
    events = change_bank_details(state, change(state), confirmation(state), ctx())
    assert len(events) == 1


def test_ct4_an_ended_contract_cannot_be_changed(upstream) -> None:
    state = upstream.run(
        None,
        upstream.issued(holders=(ANNA,)),
        upstream.cancelled(effective_date=date(2026, 3, 31)),
    )
    with pytest.raises(CommandRejected) as refused:
        change_bank_details(state, change(state), confirmation(state), ctx())
    assert refused.value.code is ReasonCode.POLICY_ENDED
    assert "31.03.2026" in refused.value.detail


# --------------------------------------------------------------------------- move


def move(
    *, customer_id: str = ANNA, address: PostalAddress = NEW_HOME, moved_on=date(2026, 5, 1)
) -> ReportMove:
    return ReportMove(
        customer_id=customer_id,
        account_activated=True,
        policy_id="AS-1000",
        new_address=address,
        moved_on=moved_on,
    )


def test_ct4_a_reported_move_records_the_new_address(policy) -> None:
    events = report_move(policy, move(), ctx())

    assert len(events) == 1
    event = events[0]
    assert isinstance(event, MoveReported)
    assert event.new_address == NEW_HOME
    assert event.moved_on == date(2026, 5, 1)
    assert event.occurred_at == NOW
    after = evolve(policy, event)
    assert after.postal_address == NEW_HOME
    assert after.moved_on == date(2026, 5, 1)


def test_ct4_reporting_the_same_move_again_has_no_effect(policy) -> None:
    after = evolve(policy, report_move(policy, move(), ctx("r-1"))[0])
    assert report_move(after, move(), ctx("r-2")) == []
    assert len(report_move(after, move(moved_on=date(2026, 6, 1)), ctx("r-3"))) == 1


def test_ct3_joint_policyholders_cannot_report_a_move_online(upstream) -> None:
    state = upstream.run(None, upstream.issued(holders=(ANNA, "cust-ben")))
    with pytest.raises(CommandRejected) as refused:
        report_move(state, move(), ctx())
    assert refused.value.code is ReasonCode.JOINT_POLICYHOLDERS


def test_ct4_a_move_for_an_unknown_policy_is_refused() -> None:
    with pytest.raises(CommandRejected) as refused:
        report_move(None, move(), ctx())
    assert refused.value.code is ReasonCode.NOT_YET_ISSUED
