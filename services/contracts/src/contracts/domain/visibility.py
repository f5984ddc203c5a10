"""Who sees which contract (CT-3, ID-3).

- The sole policyholder sees the contract.
- For company pension (bAV) and company health (bKV) contracts that allow it, the
  insured persons see it too (read-only).
- Nobody else: not joint policyholders, not insured persons of other contracts.
- A cancelled contract stays visible to those who saw it (history, documents).
- An account whose activation code was not yet entered sees no contract (ID-3).

`why_not_visible` answers "why don't I see contract X?". It never tells a customer
anything about a contract they have nothing to do with: for them the answer is the
same as for a policy number that does not exist (`not_yet_issued`), so the endpoint
cannot be used to probe policy numbers or learn who holds them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from contracts.domain.errors import CommandRejected, ReasonCode

if TYPE_CHECKING:
    from contracts.domain.policy import PolicyState


class ViewerRole(StrEnum):
    POLICYHOLDER = "policyholder"
    INSURED_PERSON = "insured_person"


class NotVisibleReason(StrEnum):
    ACCOUNT_NOT_ACTIVATED = "account_not_activated"
    NOT_YET_ISSUED = "not_yet_issued"
    JOINT_POLICYHOLDERS = "joint_policyholders"
    NOT_POLICYHOLDER = "not_policyholder"

    @property
    def explanation(self) -> str:
        """German text for the customer."""
        return _EXPLANATIONS[self]


_ONLY_SOLE_HOLDER = (
    "In Meine Allianz sehen Sie ausschließlich Verträge, bei denen Sie alleiniger "
    "Versicherungsnehmer sind."
)

_EXPLANATIONS: dict[NotVisibleReason, str] = {
    NotVisibleReason.ACCOUNT_NOT_ACTIVATED: (
        "Ihr Zugang ist noch nicht vollständig freigeschaltet. Ihre Verträge erscheinen, "
        "sobald Sie den Freischaltcode eingegeben haben, den wir Ihnen per Post gesendet "
        "haben. Ist der Code abgelaufen, können Sie einen neuen anfordern."
    ),
    NotVisibleReason.NOT_YET_ISSUED: (
        "Zu dieser Vertragsnummer können wir Ihnen keinen Vertrag anzeigen. Bitte prüfen "
        "Sie die Vertragsnummer. Ein neu abgeschlossener Vertrag erscheint, sobald die "
        f"Police erstellt wurde. {_ONLY_SOLE_HOLDER}"
    ),
    NotVisibleReason.JOINT_POLICYHOLDERS: (
        "Dieser Vertrag hat mehrere Versicherungsnehmer. " + _ONLY_SOLE_HOLDER
    ),
    NotVisibleReason.NOT_POLICYHOLDER: (
        f"Sie sind nicht Versicherungsnehmer dieses Vertrags. {_ONLY_SOLE_HOLDER} "
        "Verträge der betrieblichen Altersversorgung und der betrieblichen "
        "Krankenversicherung sehen versicherte Personen nur, wenn der Vertrag dies "
        "vorsieht."
    ),
}


class ContractNotVisible(CommandRejected):
    """The customer may not see (so not read or change) the contract."""

    def __init__(self, reason: NotVisibleReason) -> None:
        super().__init__(ReasonCode(reason.value), reason.explanation)
        self.reason = reason


def viewer_role(customer_id: str, policy: PolicyState) -> ViewerRole | None:
    """CT-3 alone (no activation check): how `customer_id` sees `policy`, if at all."""
    if set(policy.policyholder_ids) == {customer_id}:
        return ViewerRole.POLICYHOLDER
    if customer_id in policy.visible_insured_person_ids:
        return ViewerRole.INSURED_PERSON
    return None


def is_visible(customer_id: str, policy: PolicyState) -> bool:
    """CT-3: sole policyholder, or insured person of a bAV/bKV contract allowing it."""
    return viewer_role(customer_id, policy) is not None


def why_not_visible(
    customer_id: str, account_activated: bool, policy: PolicyState | None
) -> NotVisibleReason | None:
    """CT-3/ID-3: why `customer_id` does not see `policy`; None when they do."""
    if not account_activated:
        return NotVisibleReason.ACCOUNT_NOT_ACTIVATED
    if policy is None:
        return NotVisibleReason.NOT_YET_ISSUED
    if viewer_role(customer_id, policy) is not None:
        return None
    if customer_id in policy.policyholder_ids:
        return NotVisibleReason.JOINT_POLICYHOLDERS
    if customer_id in policy.insured_person_ids or customer_id in policy.former_policyholder_ids:
        return NotVisibleReason.NOT_POLICYHOLDER
    # A stranger to the contract: answer exactly as for an unknown policy number.
    return NotVisibleReason.NOT_YET_ISSUED


def require_visible(
    customer_id: str, account_activated: bool, policy: PolicyState | None
) -> ViewerRole:
    """The customer's role on the policy, or `ContractNotVisible`."""
    reason = why_not_visible(customer_id, account_activated, policy)
    if reason is not None or policy is None:
        raise ContractNotVisible(reason or NotVisibleReason.NOT_YET_ISSUED)
    role = viewer_role(customer_id, policy)
    assert role is not None
    return role
