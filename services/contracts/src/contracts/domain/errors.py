"""Domain errors of the contracts service.

Every refusal carries a stable, machine-readable reason code and a `detail` text.
Two audiences, two languages (PRODUCT.md):

- `UpstreamRejected`: an upstream system's message (CT-1) cannot be recorded. The
  detail is English; the handler answers the internal HTTP caller with it or sends the
  message to the dead-letter topic with it.
- `CommandRejected`: a customer's command cannot be carried out. The detail is German
  and may be shown to the customer as is (the API's `detail` field).
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    """Stable reason codes. Values are part of the API: never rename, only add."""

    # upstream messages (CT-1)
    POLICY_NOT_FOUND = "policy_not_found"
    INVALID_POLICY_NUMBER = "invalid_policy_number"
    ALREADY_ISSUED = "already_issued"
    CARRIER_MISMATCH = "carrier_mismatch"
    PRODUCT_LINE_MISMATCH = "product_line_mismatch"
    ALREADY_CANCELLED = "already_cancelled"
    PAYMENT_CONFLICT = "payment_conflict"
    INVALID_CUSTOMER_IDS = "invalid_customer_ids"
    MESSAGE_ID_REUSED = "message_id_reused"

    # customer commands (CT-3, CT-4, ID-3, ID-6)
    ACCOUNT_NOT_ACTIVATED = "account_not_activated"
    NOT_YET_ISSUED = "not_yet_issued"
    JOINT_POLICYHOLDERS = "joint_policyholders"
    NOT_POLICYHOLDER = "not_policyholder"
    POLICY_ENDED = "policy_ended"
    MTAN_REQUIRED = "mtan_required"
    MTAN_NOT_CONFIRMED = "mtan_not_confirmed"
    MTAN_MISMATCH = "mtan_mismatch"
    MTAN_EXPIRED = "mtan_expired"
    IBAN_INVALID_CHARACTERS = "iban_invalid_characters"
    IBAN_UNKNOWN_COUNTRY = "iban_unknown_country"
    IBAN_WRONG_LENGTH = "iban_wrong_length"
    IBAN_WRONG_CHECKSUM = "iban_wrong_checksum"
    IBAN_NOT_SEPA = "iban_not_sepa"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"


class DomainError(Exception):
    """A rule refused the request. `code` is stable; `detail` is for humans."""

    def __init__(self, code: ReasonCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail


class UpstreamRejected(DomainError):
    """An upstream message was refused; `detail` is English."""


class CommandRejected(DomainError):
    """A customer command was refused; `detail` is German, fit to show to the customer."""
