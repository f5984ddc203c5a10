"""CT-4 contract summary and details for the customer API (visibility per CT-3/ID-3)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from contracts.domain.iban import parse_iban
from contracts.domain.mtan import (
    BANK_DETAILS_MTAN_PURPOSE,
    MtanConfirmation,
    bank_details_mtan_reference,
)
from contracts.domain.policy import (
    ChangeBankDetails,
    DecisionContext,
    PolicyState,
    PolicyStatus,
    ReportMove,
    change_bank_details,
    deterministic_event_ids,
    evolve,
    report_move,
)
from contracts.domain.views import (
    DocumentRef,
    contract_details,
    contract_summaries,
    contract_summary,
)
from contracts.domain.visibility import ContractNotVisible, NotVisibleReason, ViewerRole
from contracts_schemas.common import Carrier, PostalAddress, ProductLine

ANNA = "cust-anna"
NOW = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
HOME = PostalAddress(
    recipient="Anna Beispiel", street="Hauptstr. 1", postal_code="10115", city="Berlin"
)


def with_bank_details(state: PolicyState) -> PolicyState:
    ctx = DecisionContext(new_event_id=deterministic_event_ids("bank"), now=NOW)
    iban = "DE89370400440532013000"
    mtan = MtanConfirmation(
        customer_id=ANNA,
        purpose=BANK_DETAILS_MTAN_PURPOSE,
        reference=bank_details_mtan_reference(state.policy_id, parse_iban(iban)),
        confirmed=True,
        confirmed_at=NOW,
    )
    command = ChangeBankDetails(ANNA, True, state.policy_id, iban)
    state = evolve(state, change_bank_details(state, command, mtan, ctx)[0])
    move = ReportMove(ANNA, True, state.policy_id, HOME, date(2026, 4, 15))
    move_ctx = DecisionContext(new_event_id=deterministic_event_ids("move"), now=NOW)
    return evolve(state, report_move(state, move, move_ctx)[0])


def test_ct4_summary_shows_product_carrier_tariff_premium_and_status(upstream, catalogue) -> None:
    policy = upstream.run(
        None,
        upstream.issued(
            "HR-12",
            product_line=ProductLine.HOUSEHOLD_CONTENTS,
            holders=(ANNA,),
            tariff="Hausrat Premium",
            annual_premium_cents=15_990,
            start_date=date(2025, 7, 1),
        ),
    )

    summary = contract_summary(policy, ANNA, True, catalogue)

    assert summary.policy_number == "HR-12"
    assert summary.product_name == "Hausratversicherung"
    assert summary.carrier is Carrier.ALLIANZ_VERSICHERUNGS_AG
    assert summary.carrier_name == "Allianz Versicherungs-AG"
    assert summary.tariff == "Hausrat Premium"
    assert summary.annual_premium_cents == 15_990
    assert summary.start_date == date(2025, 7, 1)
    assert summary.status is PolicyStatus.ACTIVE
    assert summary.status_label == "aktiv"
    assert summary.end_date is None
    assert summary.role is ViewerRole.POLICYHOLDER


def test_ct4_a_cancelled_contract_says_until_when(upstream, catalogue) -> None:
    policy = upstream.run(
        None,
        upstream.issued(holders=(ANNA,)),
        upstream.cancelled(effective_date=date(2026, 12, 31)),
    )
    summary = contract_summary(policy, ANNA, True, catalogue)
    assert summary.status_label == "gekündigt zum 31.12.2026"
    assert summary.end_date == date(2026, 12, 31)


def test_ct3_the_contract_list_holds_only_visible_contracts_active_first(
    upstream, catalogue
) -> None:
    mine = upstream.run(
        None, upstream.issued("A-1", product_line=ProductLine.MOTOR, holders=(ANNA,))
    )
    joint = upstream.run(None, upstream.issued("A-2", holders=(ANNA, "cust-ben")))
    ended = upstream.run(None, upstream.issued("A-3", holders=(ANNA,)), upstream.cancelled("A-3"))
    bkv = upstream.run(
        None,
        upstream.issued(
            "A-4",
            product_line=ProductLine.COMPANY_HEALTH,
            holders=("employer-acme",),
            insured=(ANNA,),
            visible_to_insured=True,
        ),
    )
    someone_elses = upstream.run(None, upstream.issued("A-5", holders=("cust-zoe",)))

    listed = contract_summaries([mine, joint, ended, bkv, someone_elses], ANNA, True, catalogue)

    assert [s.policy_number for s in listed] == ["A-4", "A-1", "A-3"]
    assert [s.role for s in listed] == [
        ViewerRole.INSURED_PERSON,
        ViewerRole.POLICYHOLDER,
        ViewerRole.POLICYHOLDER,
    ]


def test_id3_the_contract_list_is_empty_until_the_account_is_activated(upstream, catalogue) -> None:
    mine = upstream.run(None, upstream.issued(holders=(ANNA,)))
    assert contract_summaries([mine], ANNA, False, catalogue) == []


def test_ct4_details_show_coverage_premium_payments_masked_iban_and_documents(
    upstream, catalogue
) -> None:
    policy = upstream.run(
        None,
        upstream.issued(holders=(ANNA,), annual_premium_cents=12_000),
        upstream.paid(
            payment_id="p1", amount_cents=1_000, at=datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
        ),
        upstream.paid(
            payment_id="p2", amount_cents=1_000, at=datetime(2026, 2, 28, 9, 0, tzinfo=UTC)
        ),
    )
    policy = with_bank_details(policy)
    documents = [
        DocumentRef("d-1", "Versicherungsschein", "policy", date(2026, 1, 2)),
        DocumentRef("d-2", "Beitragsrechnung", "invoice", date(2026, 2, 1)),
    ]

    details = contract_details(policy, ANNA, True, catalogue, documents)

    assert details.coverage.product_name == "Haftpflichtversicherung"
    assert details.coverage.tariff == "Privathaftpflicht Komfort"
    assert details.add_ons == ()
    assert details.premium.annual_premium_cents == 12_000
    assert [p.payment_id for p in details.premium.payments] == ["p2", "p1"]
    # paid at 23:30 UTC on 31 January = 1 February in Berlin
    assert details.premium.payments[1].paid_on == date(2026, 2, 1)
    assert details.premium.total_paid_cents == 2_000
    assert details.premium.last_paid_on == date(2026, 2, 28)
    assert details.bank_details is not None
    assert details.bank_details.iban_masked == "DE89 **** **** **** **** 00"
    assert details.bank_details.changed_on == date(2026, 4, 1)
    assert details.postal_address == HOME
    assert [d.document_id for d in details.documents] == ["d-2", "d-1"]


def test_ct4_details_before_any_bank_details_change_have_no_iban(upstream, catalogue) -> None:
    policy = upstream.run(None, upstream.issued(holders=(ANNA,)))
    details = contract_details(policy, ANNA, True, catalogue)
    assert details.bank_details is not None
    assert details.bank_details.iban_masked is None
    assert details.premium.payments == ()
    assert details.premium.last_paid_on is None
    assert details.documents == ()


def test_ct3_an_insured_person_does_not_see_the_employers_bank_details(upstream, catalogue) -> None:
    policy = upstream.run(
        None,
        upstream.issued(
            product_line=ProductLine.COMPANY_PENSION,
            holders=("employer-acme",),
            insured=(ANNA,),
            visible_to_insured=True,
        ),
    )

    details = contract_details(policy, ANNA, True, catalogue)

    assert details.summary.role is ViewerRole.INSURED_PERSON
    assert details.summary.product_name == "Betriebliche Altersversorgung (bAV)"
    assert details.bank_details is None
    assert details.postal_address is None


@pytest.mark.parametrize(
    ("holders", "customer", "activated", "reason"),
    [
        ((ANNA, "cust-ben"), ANNA, True, NotVisibleReason.JOINT_POLICYHOLDERS),
        (("cust-ben",), ANNA, True, NotVisibleReason.NOT_YET_ISSUED),
        ((ANNA,), ANNA, False, NotVisibleReason.ACCOUNT_NOT_ACTIVATED),
    ],
)
def test_ct3_details_of_an_invisible_contract_are_refused_with_the_reason(
    upstream, catalogue, holders, customer, activated, reason
) -> None:
    policy = upstream.run(None, upstream.issued(holders=holders))

    with pytest.raises(ContractNotVisible) as refused:
        contract_details(policy, customer, activated, catalogue)

    assert refused.value.reason is reason


def test_ct3_details_of_an_unknown_policy_are_refused_as_not_yet_issued(catalogue) -> None:
    with pytest.raises(ContractNotVisible) as refused:
        contract_details(None, ANNA, True, catalogue)
    assert refused.value.reason is NotVisibleReason.NOT_YET_ISSUED
