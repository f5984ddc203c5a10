"""CT-1/CT-2/CT-5: recording what upstream systems report about a policy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest
from contracts.domain.catalogue import Catalogue
from contracts.domain.errors import ReasonCode, UpstreamRejected
from contracts.domain.policy import (
    DecisionContext,
    InconsistentHistory,
    PolicyStatus,
    cancel_policy,
    deterministic_event_ids,
    evolve,
    fold,
    issue_policy,
    policy_id_for,
    record_premium_payment,
    upstream_event_ids,
)
from contracts_schemas.common import Carrier, ProductLine
from contracts_schemas.contracts import (
    PolicyCancelled,
    PolicyEvent,
    PolicyholdersChanged,
    PolicyIssued,
    PremiumPaid,
)
from contracts_schemas.upstream import (
    PolicyCancelledUpstream,
    PolicyIssuedUpstream,
    PremiumPaidUpstream,
)


def only(items: list[PolicyEvent]) -> PolicyEvent:
    assert len(items) == 1, items
    return items[0]


# --------------------------------------------------------------------------- issue


def test_ct1_issue_records_policy_issued_as_version_1_of_the_policy_stream(upstream) -> None:
    message = upstream.issued("AS-1000", holders=("cust-anna",))

    event = only(upstream.decide(None, message))

    assert isinstance(event, PolicyIssued)
    assert event.aggregate_id == event.policy_id == "AS-1000"
    assert event.aggregate_version == 1
    assert event.occurred_at == message.occurred_at  # upstream business time
    assert event.customer_ids == ("cust-anna",)
    assert event.policyholder_ids == ("cust-anna",)
    assert event.product_line is ProductLine.LIABILITY
    assert event.carrier is Carrier.ALLIANZ_VERSICHERUNGS_AG
    assert event.point_relevant is True
    assert event.tariff == message.tariff
    assert event.annual_premium_cents == message.annual_premium_cents


def test_ct1_policy_numbers_are_normalised_into_one_stream_id() -> None:
    assert policy_id_for(" as 1000 ") == "AS1000"
    assert policy_id_for("AS-1000/7") == "AS-1000/7"


def test_ct1_the_same_upstream_message_delivered_twice_yields_identical_events(upstream) -> None:
    message = upstream.issued()

    first = upstream.decide(None, message)
    again = upstream.decide(None, message.model_copy())

    assert first == again
    assert first[0].event_id == again[0].event_id


def test_ct1_a_redelivered_issue_message_has_no_second_effect(upstream) -> None:
    message = upstream.issued()
    state = upstream.run(None, message)

    assert upstream.decide(state, message) == []


def test_ct1_a_message_redelivered_after_later_events_has_no_second_effect(upstream) -> None:
    payment = upstream.paid(payment_id="pay-1")
    state = upstream.run(None, upstream.issued(), payment, upstream.cancelled())

    assert upstream.decide(state, payment) == []
    assert upstream.decide(state, upstream.issued(message_id="other")) != []


def test_ct1_event_ids_depend_on_sender_and_message_id_only(upstream) -> None:
    a = upstream.issued(message_id="m-1")
    b = upstream.issued(message_id="m-2")
    assert upstream_event_ids(a)("x") == upstream_event_ids(a.model_copy())("x")
    assert upstream_event_ids(a)("x") != upstream_event_ids(b)("x")
    assert upstream_event_ids(a)("x") != upstream_event_ids(a)("y")


def test_ct1_issuing_an_active_policy_again_is_refused(upstream) -> None:
    state = upstream.run(None, upstream.issued())

    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(state, upstream.issued())

    assert refused.value.code is ReasonCode.ALREADY_ISSUED
    assert "already issued" in refused.value.detail


@pytest.mark.parametrize(
    ("line", "wrong_carrier"),
    [
        (ProductLine.MOTOR, Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG),
        (ProductLine.LIFE, Carrier.ALLIANZ_VERSICHERUNGS_AG),
        (ProductLine.FULL_HEALTH, Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG),
        (ProductLine.INVESTMENT, Carrier.ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG),
        (ProductLine.LONG_TERM_CARE, Carrier.FOURMORE),
    ],
)
def test_ct2_a_carrier_that_does_not_issue_the_product_line_is_refused(
    upstream, line: ProductLine, wrong_carrier: Carrier
) -> None:
    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(None, upstream.issued(product_line=line, carrier=wrong_carrier))

    assert refused.value.code is ReasonCode.CARRIER_MISMATCH
    assert wrong_carrier.value in refused.value.detail


@pytest.mark.parametrize("carrier", [Carrier.ALLIANZ_GLOBAL_INVESTORS, Carrier.ALLVEST])
def test_ct2_investment_products_of_each_investment_firm_are_recorded(upstream, carrier) -> None:
    event = only(
        upstream.decide(None, upstream.issued(product_line=ProductLine.INVESTMENT, carrier=carrier))
    )
    assert isinstance(event, PolicyIssued)
    assert event.carrier is carrier
    assert event.point_relevant is False


def test_ct1_a_retaken_contract_is_issued_again_after_cancellation(upstream) -> None:
    state = upstream.run(
        None,
        upstream.issued(start_date=date(2020, 1, 1), holders=("cust-anna",)),
        upstream.cancelled(effective_date=date(2024, 12, 31)),
    )

    event = only(
        upstream.decide(state, upstream.issued(start_date=date(2026, 1, 1), holders=("cust-anna",)))
    )
    retaken = evolve(state, event)

    assert event.aggregate_version == 3
    assert retaken.status is PolicyStatus.ACTIVE
    assert retaken.start_date == date(2026, 1, 1)
    assert retaken.cancellation_effective_date is None
    assert [(t.start_date, t.cancellation_effective_date) for t in retaken.terms] == [
        (date(2020, 1, 1), date(2024, 12, 31)),
        (date(2026, 1, 1), None),
    ]


def test_ct1_a_retaken_contract_with_other_holders_tells_the_earlier_holders_too(upstream) -> None:
    state = upstream.run(None, upstream.issued(holders=("cust-anna",)), upstream.cancelled())

    event = only(upstream.decide(state, upstream.issued(holders=("cust-ben",))))
    retaken = evolve(state, event)

    assert event.customer_ids == ("cust-ben", "cust-anna")
    assert retaken.former_policyholder_ids == {"cust-anna"}


def test_ct1_a_retaken_contract_keeps_its_product_line(upstream) -> None:
    state = upstream.run(None, upstream.issued(), upstream.cancelled())

    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(state, upstream.issued(product_line=ProductLine.MOTOR))

    assert refused.value.code is ReasonCode.PRODUCT_LINE_MISMATCH


def test_ct1_blank_customer_ids_are_refused(upstream) -> None:
    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(None, upstream.issued(holders=("cust-anna", " ")))
    assert refused.value.code is ReasonCode.INVALID_CUSTOMER_IDS


def test_ct1_a_policy_number_of_only_whitespace_is_refused(upstream) -> None:
    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(None, upstream.issued(policy_number="   "))
    assert refused.value.code is ReasonCode.INVALID_POLICY_NUMBER


def test_ct1_repeated_policyholder_ids_are_recorded_once(upstream) -> None:
    event = only(upstream.decide(None, upstream.issued(holders=("cust-anna", "cust-anna"))))
    assert isinstance(event, PolicyIssued)
    assert event.policyholder_ids == ("cust-anna",)


def test_ct3_insured_persons_are_named_on_events_where_they_may_see_the_contract(upstream) -> None:
    event = only(
        upstream.decide(
            None,
            upstream.issued(
                product_line=ProductLine.COMPANY_HEALTH,
                holders=("employer-acme",),
                insured=("cust-anna", "cust-ben"),
                visible_to_insured=True,
            ),
        )
    )
    assert event.customer_ids == ("employer-acme", "cust-anna", "cust-ben")


def test_ct3_insured_persons_of_other_lines_are_never_shown_the_contract(upstream) -> None:
    event = only(
        upstream.decide(
            None,
            upstream.issued(
                product_line=ProductLine.MOTOR,
                holders=("cust-anna",),
                insured=("cust-ben",),
                visible_to_insured=True,
            ),
        )
    )
    assert isinstance(event, PolicyIssued)
    assert event.visible_to_insured is False
    assert event.insured_person_ids == ("cust-ben",)
    assert event.customer_ids == ("cust-anna",)


def test_ct3_bav_insured_persons_are_not_named_unless_the_contract_allows_it(upstream) -> None:
    event = only(
        upstream.decide(
            None,
            upstream.issued(
                product_line=ProductLine.COMPANY_PENSION,
                holders=("employer-acme",),
                insured=("cust-anna",),
                visible_to_insured=False,
            ),
        )
    )
    assert event.customer_ids == ("employer-acme",)


# --------------------------------------------------------------------------- premium


def test_ct1_a_premium_payment_for_an_unknown_policy_is_refused(upstream) -> None:
    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(None, upstream.paid("AS-404"))

    assert refused.value.code is ReasonCode.POLICY_NOT_FOUND
    assert "AS-404" in refused.value.detail


def test_ct5_premium_paid_carries_product_line_relevance_and_current_policyholders(
    upstream,
) -> None:
    state = upstream.run(
        None,
        upstream.issued(holders=("cust-anna",)),
        upstream.holders_changed(holders=("cust-anna", "cust-ben")),
    )
    message = upstream.paid(payment_id="pay-7", amount_cents=4_250)

    event = only(upstream.decide(state, message))

    assert isinstance(event, PremiumPaid)
    assert event.aggregate_version == 3
    assert event.payment_id == "pay-7"
    assert event.amount_cents == 4_250
    assert event.product_line is ProductLine.LIABILITY
    assert event.point_relevant is True
    assert event.policyholder_ids == ("cust-anna", "cust-ben")  # LOY-7
    assert event.customer_ids == ("cust-anna", "cust-ben")
    assert event.occurred_at == message.occurred_at  # LOY-2 uses the month of payment


def test_ct5_premium_on_a_non_relevant_line_is_recorded_as_not_point_relevant(upstream) -> None:
    state = upstream.run(None, upstream.issued(product_line=ProductLine.TRAVEL_HEALTH))
    event = only(upstream.decide(state, upstream.paid()))
    assert isinstance(event, PremiumPaid)
    assert event.point_relevant is False


def test_ct5_premium_paid_uses_the_relevance_configured_when_it_is_recorded(upstream) -> None:
    state = upstream.run(None, upstream.issued(product_line=ProductLine.TRAVEL_HEALTH))
    operators_changed_it = Catalogue.from_config({"travel_health": True})

    event = only(upstream.decide(state, upstream.paid(), operators_changed_it))

    assert isinstance(event, PremiumPaid)
    assert event.point_relevant is True
    assert state.point_relevant is False  # the issue event keeps what held back then


def test_ct1_a_payment_after_cancellation_is_still_recorded(upstream) -> None:
    """LOY-8: the money was paid; loyalty, not contracts, decides that it earns nothing."""
    state = upstream.run(None, upstream.issued(), upstream.cancelled())

    event = only(upstream.decide(state, upstream.paid(payment_id="late-1")))
    after = evolve(state, event)

    assert isinstance(event, PremiumPaid)
    assert after.status is PolicyStatus.CANCELLED
    assert after.payment("late-1") is not None


def test_ct1_the_same_payment_id_twice_has_no_second_effect(upstream) -> None:
    state = upstream.run(None, upstream.issued(), upstream.paid(payment_id="pay-1"))

    resent_by_collections = upstream.paid(payment_id="pay-1", message_id="another-message")

    assert upstream.decide(state, resent_by_collections) == []
    assert state.total_paid_cents == 1_000


def test_ct1_the_same_payment_id_with_another_amount_is_a_conflict(upstream) -> None:
    state = upstream.run(None, upstream.issued(), upstream.paid(payment_id="pay-1"))

    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(state, upstream.paid(payment_id="pay-1", amount_cents=999))

    assert refused.value.code is ReasonCode.PAYMENT_CONFLICT


def test_ct1_payments_accumulate_in_the_state(upstream) -> None:
    state = upstream.run(
        None,
        upstream.issued(),
        upstream.paid(payment_id="p1", amount_cents=1_000),
        upstream.paid(payment_id="p2", amount_cents=2_500),
    )
    assert state.version == 3
    assert state.total_paid_cents == 3_500
    assert [p.payment_id for p in state.payments.values()] == ["p1", "p2"]


# --------------------------------------------------------------------------- cancel


def test_ct1_cancellation_records_effective_date_and_policyholders(upstream) -> None:
    state = upstream.run(None, upstream.issued(holders=("cust-anna",)))

    event = only(upstream.decide(state, upstream.cancelled(effective_date=date(2026, 12, 31))))
    after = evolve(state, event)

    assert isinstance(event, PolicyCancelled)
    assert event.effective_date == date(2026, 12, 31)
    assert event.policyholder_ids == ("cust-anna",)
    assert event.aggregate_version == 2
    assert after.status is PolicyStatus.CANCELLED
    assert after.in_force_on(date(2026, 12, 31))
    assert not after.in_force_on(date(2027, 1, 1))


def test_ct1_cancelling_a_policy_that_was_never_issued_is_refused(upstream) -> None:
    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(None, upstream.cancelled())
    assert refused.value.code is ReasonCode.POLICY_NOT_FOUND


def test_ct1_cancelling_a_cancelled_policy_again_is_refused(upstream) -> None:
    state = upstream.run(None, upstream.issued(), upstream.cancelled())

    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(state, upstream.cancelled())

    assert refused.value.code is ReasonCode.ALREADY_CANCELLED


def test_ct1_a_redelivered_cancellation_is_not_refused_but_ignored(upstream) -> None:
    cancellation = upstream.cancelled()
    state = upstream.run(None, upstream.issued(), cancellation)
    assert upstream.decide(state, cancellation) == []


# --------------------------------------------------------------------------- holders


def test_ct1_policyholders_changed_names_previous_and_new_holders(upstream) -> None:
    state = upstream.run(None, upstream.issued(holders=("cust-anna",)))

    event = only(upstream.decide(state, upstream.holders_changed(holders=("cust-ben",))))
    after = evolve(state, event)

    assert isinstance(event, PolicyholdersChanged)
    assert event.policyholder_ids == ("cust-ben",)
    assert event.previous_policyholder_ids == ("cust-anna",)
    assert event.customer_ids == ("cust-ben", "cust-anna")
    assert after.policyholder_ids == ("cust-ben",)
    assert after.former_policyholder_ids == {"cust-anna"}


def test_ct1_unchanged_policyholders_record_nothing(upstream) -> None:
    state = upstream.run(None, upstream.issued(holders=("cust-anna",)))
    assert upstream.decide(state, upstream.holders_changed(holders=("cust-anna",))) == []


def test_ct1_policyholders_of_an_unknown_policy_cannot_change(upstream) -> None:
    with pytest.raises(UpstreamRejected) as refused:
        upstream.decide(None, upstream.holders_changed(holders=("cust-anna",)))
    assert refused.value.code is ReasonCode.POLICY_NOT_FOUND


def test_ct1_a_holder_who_returns_is_no_longer_a_former_holder(upstream) -> None:
    state = upstream.run(
        None,
        upstream.issued(holders=("cust-anna",)),
        upstream.holders_changed(holders=("cust-ben",)),
        upstream.holders_changed(holders=("cust-anna",)),
    )
    assert state.former_policyholder_ids == {"cust-ben"}


# --------------------------------------------------------------------------- fold


def test_state_is_a_fold_of_the_events(upstream) -> None:
    events = []
    state = None
    for message in (
        upstream.issued(),
        upstream.paid(payment_id="p1"),
        upstream.holders_changed(holders=("cust-ben",)),
        upstream.cancelled(),
    ):
        new = upstream.decide(state, message)
        events += new
        state = upstream.apply(state, new)

    assert fold(events) == state
    assert fold([]) is None
    assert state is not None
    assert state.version == 4
    assert state.event_ids == {event.event_id for event in events}


def test_a_history_with_a_gap_in_versions_is_refused(upstream) -> None:
    issued = upstream.decide(None, upstream.issued())
    state = upstream.apply(None, issued)
    paid = upstream.decide(state, upstream.paid())
    gap = paid[0].model_copy(update={"aggregate_version": 3})

    with pytest.raises(InconsistentHistory):
        fold([*issued, gap])


def test_a_history_must_start_with_policy_issued(upstream) -> None:
    state = upstream.run(None, upstream.issued())
    cancelled = upstream.decide(state, upstream.cancelled())[0]

    with pytest.raises(InconsistentHistory):
        evolve(None, cancelled.model_copy(update={"aggregate_version": 1}))


def test_events_of_another_policy_do_not_fold_into_this_one(upstream) -> None:
    state = upstream.run(None, upstream.issued("AS-1"))
    other = upstream.run(None, upstream.issued("AS-2"))
    foreign = upstream.decide(other, upstream.paid("AS-2"))[0]

    with pytest.raises(InconsistentHistory):
        evolve(state, foreign)


def test_deciding_with_the_state_of_another_policy_is_a_programming_error(upstream) -> None:
    state = upstream.run(None, upstream.issued("AS-1"))
    with pytest.raises(ValueError, match="AS-1"):
        upstream.decide(state, upstream.paid("AS-2"))


def test_the_decision_context_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        DecisionContext(new_event_id=deterministic_event_ids("k"), now=datetime(2026, 1, 1))


def test_the_business_date_is_the_berlin_date() -> None:
    late_evening_utc = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    ctx = DecisionContext(new_event_id=deterministic_event_ids("k"), now=late_evening_utc)
    assert ctx.today == date(2027, 1, 1)


def test_deciders_are_plain_functions_of_their_inputs(catalogue) -> None:
    at = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    ids = iter(UUID(int=n) for n in range(1, 100))
    ctx = DecisionContext(new_event_id=lambda _seed: next(ids), now=at)
    issued = PolicyIssuedUpstream(
        message_id="m-1",
        source_system="pas",
        occurred_at=at,
        policy_number="KV-77",
        product_line=ProductLine.FULL_HEALTH,
        carrier=Carrier.ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG,
        policyholder_ids=("c-1",),
        start_date=date(2026, 1, 1),
    )
    cancelled = PolicyCancelledUpstream(
        message_id="m-2",
        source_system="pas",
        occurred_at=at + timedelta(days=1),
        policy_number="KV-77",
        effective_date=date(2026, 3, 31),
    )
    paid_elsewhere = PremiumPaidUpstream(
        message_id="m-3",
        source_system="collections",
        occurred_at=at,
        policy_number="KV-78",
        payment_id="p",
        amount_cents=1,
    )

    state = fold(issue_policy(None, issued, catalogue, ctx))
    events = cancel_policy(state, cancelled, ctx)

    assert [type(e).__name__ for e in events] == ["PolicyCancelled"]
    assert [e.event_id for e in events] == [UUID(int=2)]
    with pytest.raises(UpstreamRejected):
        record_premium_payment(None, paid_elsewhere, catalogue, ctx)
