"""Topic names and the partition key of each event.

One topic per producing aggregate. Keys keep one aggregate's events in order on one
partition; consumers never rely on order across topics (they compare business times).
"""

from __future__ import annotations

from typing import Final

CONTRACTS_POLICY: Final = "portal.contracts.policy.v1"
IDENTITY_CUSTOMER: Final = "portal.identity.customer.v1"
IDENTITY_CODES: Final = "portal.identity.codes.v1"
CLAIMS_CLAIM: Final = "portal.claims.claim.v1"
DOCUMENTS_MAILBOX: Final = "portal.documents.mailbox.v1"
LOYALTY_ACCOUNT: Final = "portal.loyalty.account.v1"
UPSTREAM_CONTRACTS: Final = "upstream.contracts.v1"
UPSTREAM_DOCUMENTS: Final = "upstream.documents.v1"
UPSTREAM_CLAIMS: Final = "upstream.claims.v1"

DEAD_LETTER_PREFIX: Final = "portal.dlq."


def dead_letter_topic(consumer_group: str) -> str:
    """Each consumer group has its own dead-letter topic, so operators replay per consumer."""
    return f"{DEAD_LETTER_PREFIX}{consumer_group}"
