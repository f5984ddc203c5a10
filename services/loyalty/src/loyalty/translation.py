"""What each published event means to the loyalty programme: the facts it contributes.

A policy event concerns every policyholder named in it; a customer event concerns that
customer. Events the programme does not care about contribute nothing; `FOLDED` names the
types that may contribute, so a replay need not even decode the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from contracts_schemas import claims, contracts, documents, identity, loyalty
from contracts_schemas.base import Contract

from loyalty.domain import facts as f
from loyalty.domain.facts import CustomerFact

CLAIM_REPORTED_ONLINE = "claim_reported_online"

C = TypeVar("C", bound=Contract)
_Translation = Callable[[Any], list[CustomerFact]]
#: By the message's exact class: one dictionary look-up per consumed event.
_TRANSLATIONS: dict[type[Contract], _Translation] = {}
#: The CloudEvents types of the messages that may contribute facts.
FOLDED: set[str] = set()


def facts_from(message: Contract) -> list[CustomerFact]:
    translate = _TRANSLATIONS.get(message.__class__)
    return [] if translate is None else translate(message)


def _translates(
    message_type: type[C],
) -> Callable[[Callable[[C], list[CustomerFact]]], Callable[[C], list[CustomerFact]]]:
    def register(translate: Callable[[C], list[CustomerFact]]) -> Callable[[C], list[CustomerFact]]:
        _TRANSLATIONS[message_type] = translate
        FOLDED.add(message_type.type_name())
        return translate

    return register


@_translates(contracts.PolicyIssued)
def _(e: contracts.PolicyIssued) -> list[CustomerFact]:
    fact = f.PolicyIssued(
        event_id=str(e.event_id),
        occurred_at=e.occurred_at,
        policy_id=e.policy_id,
        product_line=e.product_line.value,
        point_relevant=e.point_relevant,
        policyholder_ids=e.policyholder_ids,
        start_date=e.start_date,
    )
    return [(holder, fact) for holder in e.policyholder_ids]


@_translates(contracts.PremiumPaid)
def _(e: contracts.PremiumPaid) -> list[CustomerFact]:
    fact = f.PremiumPaid(
        event_id=str(e.event_id),
        occurred_at=e.occurred_at,
        payment_id=e.payment_id,
        policy_id=e.policy_id,
        product_line=e.product_line.value,
        point_relevant=e.point_relevant,
        amount_cents=e.amount_cents,
        policyholder_ids=e.policyholder_ids,
    )
    return [(holder, fact) for holder in e.policyholder_ids]


@_translates(contracts.PolicyCancelled)
def _(e: contracts.PolicyCancelled) -> list[CustomerFact]:
    fact = f.PolicyCancelled(
        event_id=str(e.event_id),
        occurred_at=e.occurred_at,
        policy_id=e.policy_id,
        effective_date=e.effective_date,
    )
    return [(holder, fact) for holder in e.policyholder_ids]


@_translates(contracts.PolicyholdersChanged)
def _(e: contracts.PolicyholdersChanged) -> list[CustomerFact]:
    fact = f.PolicyholdersChanged(
        event_id=str(e.event_id),
        occurred_at=e.occurred_at,
        policy_id=e.policy_id,
        policyholder_ids=e.policyholder_ids,
        effective_date=e.effective_date,
    )
    concerned = dict.fromkeys((*e.previous_policyholder_ids, *e.policyholder_ids))
    return [(holder, fact) for holder in concerned]


@_translates(identity.CustomerRegistered)
def _(e: identity.CustomerRegistered) -> list[CustomerFact]:
    fact = f.CustomerRegistered(
        event_id=str(e.event_id),
        occurred_at=e.occurred_at,
        customer_id=e.customer_id,
        birth_date=e.birth_date,
        country=e.address.country,
        natural_person=e.natural_person,
    )
    return [(e.customer_id, fact)]


@_translates(identity.AccountCancelled)
def _(e: identity.AccountCancelled) -> list[CustomerFact]:
    fact = f.AccountCancelled(str(e.event_id), e.occurred_at, e.customer_id)
    return [(e.customer_id, fact)]


@_translates(documents.EmailInsteadOfLetterActivated)
def _(e: documents.EmailInsteadOfLetterActivated) -> list[CustomerFact]:
    fact = f.EmailInsteadOfLetterActivated(str(e.event_id), e.occurred_at, e.customer_id)
    return [(e.customer_id, fact)]


@_translates(documents.EmailInsteadOfLetterDeactivated)
def _(e: documents.EmailInsteadOfLetterDeactivated) -> list[CustomerFact]:
    fact = f.EmailInsteadOfLetterDeactivated(str(e.event_id), e.occurred_at, e.customer_id)
    return [(e.customer_id, fact)]


@_translates(claims.ClaimReported)
def _(e: claims.ClaimReported) -> list[CustomerFact]:
    fact = f.ServiceUsed(str(e.event_id), e.occurred_at, e.customer_id, CLAIM_REPORTED_ONLINE)
    return [(e.customer_id, fact)]


@_translates(loyalty.CustomerEnrolled)
def _(e: loyalty.CustomerEnrolled) -> list[CustomerFact]:
    return [(e.customer_id, f.Enrolled(str(e.event_id), e.occurred_at, e.customer_id))]


@_translates(loyalty.RewardRedeemed)
def _(e: loyalty.RewardRedeemed) -> list[CustomerFact]:
    fact = f.RewardRedeemed(
        event_id=str(e.event_id),
        occurred_at=e.occurred_at,
        customer_id=e.customer_id,
        redemption_id=e.redemption_id,
        reward_id=e.reward_id,
        points=e.points,
        co_payment_cents=e.co_payment_cents,
    )
    return [(e.customer_id, fact)]
