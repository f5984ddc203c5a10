"""Customer views of contracts (CT-4), built from the aggregate state.

Pure helpers for the customer API ("My contracts"): a summary per contract for the
list, and the details of one contract. Every helper checks visibility itself (CT-3,
ID-3) and raises `ContractNotVisible` with the German explanation, so no caller can
forget it.

An insured person who sees a bAV/bKV contract (read-only) gets coverage, tariff and
premium, but not the policyholder's (the employer's) bank details or postal address.

Coverage details beyond the product line and tariff, add-ons and the payment
frequency are not yet delivered by upstream systems (PolicyIssuedUpstream): the views
have their place (`add_ons`, `premium.payment_frequency`) and leave them empty. The
documents of a contract belong to the documents service; the handler passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from contracts_schemas.common import Carrier, PostalAddress, ProductLine
from servicekit.clock import berlin_date

from contracts.domain.catalogue import Catalogue, carrier_name
from contracts.domain.policy import PolicyState, PolicyStatus
from contracts.domain.visibility import ViewerRole, is_visible, require_visible


@dataclass(frozen=True)
class ContractSummary:
    policy_id: str
    policy_number: str
    product_line: ProductLine
    product_name: str
    carrier: Carrier
    carrier_name: str
    status: PolicyStatus
    status_label: str
    tariff: str
    annual_premium_cents: int
    start_date: date
    end_date: date | None
    role: ViewerRole


@dataclass(frozen=True)
class CoverageView:
    product_name: str
    carrier_name: str
    tariff: str
    start_date: date
    end_date: date | None
    insured_person_count: int


@dataclass(frozen=True)
class AddOnView:
    """A rider/add-on of the contract (none delivered by upstream systems yet)."""

    name: str
    annual_premium_cents: int


@dataclass(frozen=True)
class PaymentView:
    payment_id: str
    paid_on: date
    amount_cents: int


@dataclass(frozen=True)
class PremiumView:
    annual_premium_cents: int
    payment_frequency: str | None
    payments: tuple[PaymentView, ...]  # newest first
    total_paid_cents: int
    last_paid_on: date | None


@dataclass(frozen=True)
class BankDetailsView:
    iban_masked: str | None
    changed_on: date | None


@dataclass(frozen=True)
class DocumentRef:
    """A document of the contract, as listed by the documents service."""

    document_id: str
    title: str
    category: str
    created_on: date


@dataclass(frozen=True)
class ContractDetails:
    summary: ContractSummary
    coverage: CoverageView
    add_ons: tuple[AddOnView, ...]
    premium: PremiumView
    bank_details: BankDetailsView | None  # None for insured persons (not their account)
    postal_address: PostalAddress | None  # None for insured persons; None if no move yet
    documents: tuple[DocumentRef, ...]


def status_label(policy: PolicyState) -> str:
    """German status text: "aktiv" or "gekündigt zum 31.12.2026"."""
    if policy.status is PolicyStatus.CANCELLED and policy.cancellation_effective_date:
        return f"gekündigt zum {policy.cancellation_effective_date:%d.%m.%Y}"
    return "aktiv"


def _summary(policy: PolicyState, role: ViewerRole, catalogue: Catalogue) -> ContractSummary:
    return ContractSummary(
        policy_id=policy.policy_id,
        policy_number=policy.policy_number,
        product_line=policy.product_line,
        product_name=catalogue.display_name(policy.product_line),
        carrier=policy.carrier,
        carrier_name=carrier_name(policy.carrier),
        status=policy.status,
        status_label=status_label(policy),
        tariff=policy.tariff,
        annual_premium_cents=policy.annual_premium_cents,
        start_date=policy.start_date,
        end_date=policy.cancellation_effective_date,
        role=role,
    )


def contract_summary(
    policy: PolicyState | None, customer_id: str, account_activated: bool, catalogue: Catalogue
) -> ContractSummary:
    role = require_visible(customer_id, account_activated, policy)
    assert policy is not None
    return _summary(policy, role, catalogue)


def contract_summaries(
    policies: Iterable[PolicyState],
    customer_id: str,
    account_activated: bool,
    catalogue: Catalogue,
) -> list[ContractSummary]:
    """The contracts list: only the visible ones, active first, then by product name."""
    if not account_activated:
        return []
    summaries = [
        contract_summary(policy, customer_id, account_activated, catalogue)
        for policy in policies
        if is_visible(customer_id, policy)
    ]
    return sorted(
        summaries,
        key=lambda s: (s.status is not PolicyStatus.ACTIVE, s.product_name, s.policy_number),
    )


def contract_details(
    policy: PolicyState | None,
    customer_id: str,
    account_activated: bool,
    catalogue: Catalogue,
    documents: Iterable[DocumentRef] = (),
) -> ContractDetails:
    role = require_visible(customer_id, account_activated, policy)
    assert policy is not None
    payments = tuple(
        PaymentView(
            payment_id=payment.payment_id,
            paid_on=berlin_date(payment.paid_at),
            amount_cents=payment.amount_cents,
        )
        for payment in sorted(policy.payments.values(), key=lambda p: p.paid_at, reverse=True)
    )
    holder = role is ViewerRole.POLICYHOLDER
    return ContractDetails(
        summary=_summary(policy, role, catalogue),
        coverage=CoverageView(
            product_name=catalogue.display_name(policy.product_line),
            carrier_name=carrier_name(policy.carrier),
            tariff=policy.tariff,
            start_date=policy.start_date,
            end_date=policy.cancellation_effective_date,
            insured_person_count=len(policy.insured_person_ids),
        ),
        add_ons=(),
        premium=PremiumView(
            annual_premium_cents=policy.annual_premium_cents,
            payment_frequency=None,
            payments=payments,
            total_paid_cents=policy.total_paid_cents,
            last_paid_on=payments[0].paid_on if payments else None,
        ),
        bank_details=(
            BankDetailsView(
                iban_masked=policy.iban_masked,
                changed_on=(
                    berlin_date(policy.bank_details_changed_at)
                    if policy.bank_details_changed_at
                    else None
                ),
            )
            if holder
            else None
        ),
        postal_address=policy.postal_address if holder else None,
        documents=tuple(sorted(documents, key=lambda d: d.created_on, reverse=True)),
    )
