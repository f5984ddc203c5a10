"""Every published contract, by its CloudEvents type, with its topic and partition key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contracts_schemas import claims, contracts, documents, identity, loyalty, topics, upstream
from contracts_schemas.base import Contract, Event, UpstreamMessage


@dataclass(frozen=True, slots=True)
class Registration:
    model: type[Contract]
    topic: str
    key: Callable[[Contract], str]


def _by_aggregate(message: Contract) -> str:
    assert isinstance(message, Event)
    return message.aggregate_id


def _by_policy_number(message: Contract) -> str:
    assert isinstance(message, UpstreamMessage)
    return message.policy_number


def _on(topic: str, *models: type[Contract]) -> dict[str, Registration]:
    key = _by_policy_number if topic == topics.UPSTREAM_CONTRACTS else _by_aggregate
    return {m.type_name(): Registration(m, topic, key) for m in models}


REGISTRY: dict[str, Registration] = {
    **_on(
        topics.CONTRACTS_POLICY,
        contracts.PolicyIssued,
        contracts.PremiumPaid,
        contracts.PolicyCancelled,
        contracts.PolicyholdersChanged,
        contracts.BankDetailsChanged,
        contracts.MoveReported,
    ),
    **_on(
        topics.IDENTITY_CUSTOMER,
        identity.CustomerRegistered,
        identity.AccountActivated,
        identity.AccountCancelled,
        identity.ContactDetailsChanged,
        identity.AddressChanged,
        identity.UsernameReminderRequested,
        identity.EmailVerified,
        identity.RegistrationNotCompleted,
        identity.PasswordChanged,
        identity.AccountLocked,
        identity.TwoFactorEnabled,
        identity.TwoFactorDisabled,
        identity.DeviceBound,
        identity.DeviceRevoked,
        identity.LoginSucceeded,
        identity.LoginFailed,
    ),
    **_on(
        topics.IDENTITY_CODES,
        identity.ActivationCodeIssued,
        identity.LoginCodeRequested,
        identity.MtanRequested,
        identity.PasswordResetRequested,
        identity.EmailVerificationCodeIssued,
    ),
    **_on(
        topics.CLAIMS_CLAIM,
        claims.ClaimReported,
        claims.ClaimStatusChanged,
        claims.ClaimNotificationChannelChosen,
    ),
    **_on(
        topics.DOCUMENTS_MAILBOX,
        documents.DocumentAvailable,
        documents.EmailInsteadOfLetterActivated,
        documents.EmailInsteadOfLetterDeactivated,
        documents.SecureMessageAnswered,
        documents.SecureMessageSent,
    ),
    # Documents from output management and claims for the mailbox (DOC-1), keyed by
    # policy number like every upstream message.
    documents.DocumentIssuedUpstream.type_name(): Registration(
        documents.DocumentIssuedUpstream, topics.UPSTREAM_DOCUMENTS, _by_policy_number
    ),
    **_on(
        topics.LOYALTY_ACCOUNT,
        loyalty.CustomerEnrolled,
        loyalty.PointsCredited,
        loyalty.RewardRedeemed,
        loyalty.PointsExpired,
        loyalty.PointsForfeited,
        loyalty.PointsExpiryWarningIssued,
    ),
    **_on(
        topics.UPSTREAM_CONTRACTS,
        upstream.PolicyIssuedUpstream,
        upstream.PremiumPaidUpstream,
        upstream.PolicyCancelledUpstream,
        upstream.PolicyholdersChangedUpstream,
    ),
    # Commands of the claims-handling system, keyed by policy number like every upstream
    # message (one claim belongs to one policy, so its commands stay in order).
    claims.ClaimTransitionRequested.type_name(): Registration(
        claims.ClaimTransitionRequested, topics.UPSTREAM_CLAIMS, _by_policy_number
    ),
}


def registration_of(message: Contract) -> Registration:
    return REGISTRY[type(message).type_name()]


def partition_key(message: Contract) -> str:
    return registration_of(message).key(message)


def topic_of(message: Contract) -> str:
    return registration_of(message).topic


__all__ = ["REGISTRY", "Event", "Registration", "UpstreamMessage", "partition_key", "topic_of"]
