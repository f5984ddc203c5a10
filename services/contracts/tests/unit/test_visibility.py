"""CT-3 who sees which contract, and "why don't I see contract X?" (with ID-3)."""

from __future__ import annotations

import pytest
from contracts.domain.errors import ReasonCode
from contracts.domain.visibility import (
    ContractNotVisible,
    NotVisibleReason,
    ViewerRole,
    is_visible,
    require_visible,
    viewer_role,
    why_not_visible,
)
from contracts_schemas.common import ProductLine

ANNA, BEN, MALLORY = "cust-anna", "cust-ben", "cust-mallory"


def test_ct3_the_sole_policyholder_sees_the_contract(upstream) -> None:
    policy = upstream.run(None, upstream.issued(holders=(ANNA,)))

    assert is_visible(ANNA, policy)
    assert viewer_role(ANNA, policy) is ViewerRole.POLICYHOLDER
    assert why_not_visible(ANNA, True, policy) is None


def test_ct3_joint_policyholders_do_not_see_the_contract(upstream) -> None:
    policy = upstream.run(None, upstream.issued(holders=(ANNA, BEN)))

    assert not is_visible(ANNA, policy)
    assert not is_visible(BEN, policy)
    assert why_not_visible(ANNA, True, policy) is NotVisibleReason.JOINT_POLICYHOLDERS
    assert why_not_visible(BEN, True, policy) is NotVisibleReason.JOINT_POLICYHOLDERS


@pytest.mark.parametrize("line", [ProductLine.COMPANY_PENSION, ProductLine.COMPANY_HEALTH])
def test_ct3_an_insured_person_sees_a_bav_or_bkv_contract_that_allows_it(
    upstream, line: ProductLine
) -> None:
    policy = upstream.run(
        None,
        upstream.issued(
            product_line=line, holders=("employer-acme",), insured=(ANNA,), visible_to_insured=True
        ),
    )

    assert viewer_role(ANNA, policy) is ViewerRole.INSURED_PERSON
    assert why_not_visible(ANNA, True, policy) is None


@pytest.mark.parametrize("line", [ProductLine.COMPANY_PENSION, ProductLine.COMPANY_HEALTH])
def test_ct3_an_insured_person_does_not_see_a_bav_or_bkv_contract_that_does_not_allow_it(
    upstream, line: ProductLine
) -> None:
    policy = upstream.run(
        None,
        upstream.issued(
            product_line=line, holders=("employer-acme",), insured=(ANNA,), visible_to_insured=False
        ),
    )

    assert not is_visible(ANNA, policy)
    assert why_not_visible(ANNA, True, policy) is NotVisibleReason.NOT_POLICYHOLDER


def test_ct3_insured_persons_of_other_product_lines_never_see_the_contract(upstream) -> None:
    policy = upstream.run(
        None,
        upstream.issued(
            product_line=ProductLine.LIFE, holders=(BEN,), insured=(ANNA,), visible_to_insured=True
        ),
    )

    assert not is_visible(ANNA, policy)
    assert why_not_visible(ANNA, True, policy) is NotVisibleReason.NOT_POLICYHOLDER


def test_ct3_an_unknown_policy_number_is_not_yet_issued() -> None:
    assert why_not_visible(ANNA, True, None) is NotVisibleReason.NOT_YET_ISSUED


def test_ct3_a_stranger_gets_the_same_answer_as_for_an_unknown_policy(upstream) -> None:
    """No leak: the answer does not reveal that the policy exists or who holds it."""
    policy = upstream.run(None, upstream.issued(holders=(ANNA, BEN)))

    reason = why_not_visible(MALLORY, True, policy)

    assert reason is why_not_visible(MALLORY, True, None)
    assert reason is NotVisibleReason.NOT_YET_ISSUED
    assert ANNA not in reason.explanation
    assert BEN not in reason.explanation


def test_id3_contracts_appear_only_after_the_activation_code_was_entered(upstream) -> None:
    policy = upstream.run(None, upstream.issued(holders=(ANNA,)))

    assert why_not_visible(ANNA, False, policy) is NotVisibleReason.ACCOUNT_NOT_ACTIVATED
    assert why_not_visible(ANNA, False, None) is NotVisibleReason.ACCOUNT_NOT_ACTIVATED
    assert "Freischaltcode" in NotVisibleReason.ACCOUNT_NOT_ACTIVATED.explanation


def test_ct3_a_former_policyholder_is_told_they_are_not_the_policyholder(upstream) -> None:
    policy = upstream.run(
        None, upstream.issued(holders=(ANNA,)), upstream.holders_changed(holders=(BEN,))
    )

    assert why_not_visible(ANNA, True, policy) is NotVisibleReason.NOT_POLICYHOLDER
    assert why_not_visible(BEN, True, policy) is None


def test_ct3_a_joint_contract_becomes_visible_when_one_holder_remains(upstream) -> None:
    policy = upstream.run(
        None, upstream.issued(holders=(ANNA, BEN)), upstream.holders_changed(holders=(ANNA,))
    )
    assert is_visible(ANNA, policy)


def test_ct3_a_cancelled_contract_stays_visible_to_its_policyholder(upstream) -> None:
    policy = upstream.run(None, upstream.issued(holders=(ANNA,)), upstream.cancelled())
    assert why_not_visible(ANNA, True, policy) is None


@pytest.mark.parametrize("reason", list(NotVisibleReason))
def test_ct3_every_reason_has_a_german_explanation(reason: NotVisibleReason) -> None:
    text = reason.explanation
    assert text
    assert any(word in text for word in ("Sie", "Vertrag", "Ihr"))


def test_ct3_require_visible_raises_with_reason_code_and_explanation(upstream) -> None:
    policy = upstream.run(None, upstream.issued(holders=(ANNA, BEN)))

    with pytest.raises(ContractNotVisible) as refused:
        require_visible(ANNA, True, policy)

    assert refused.value.reason is NotVisibleReason.JOINT_POLICYHOLDERS
    assert refused.value.code is ReasonCode.JOINT_POLICYHOLDERS
    assert refused.value.detail == NotVisibleReason.JOINT_POLICYHOLDERS.explanation
