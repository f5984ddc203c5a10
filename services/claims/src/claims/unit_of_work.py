"""The claims service's unit of work: servicekit's event log and inbox plus its own
repositories. Handlers see only these protocols; adapters/postgres.py and
adapters/memory.py implement them with the same semantics."""

from __future__ import annotations

from datetime import date
from typing import Protocol

from contracts_schemas.claims import ClaimStatus
from contracts_schemas.common import NotificationChannel
from servicekit.unit_of_work import UnitOfWork
from servicekit.uploads import BlobStore

from claims.domain.model import Claim, HandledMessage, IdempotencyRecord, Policy


class Policies(Protocol):
    async def get(self, policy_id: str) -> Policy | None: ...

    async def save(self, policy: Policy) -> None: ...


class Claims(Protocol):
    async def get(self, claim_id: str) -> Claim | None:
        """The claim, locked for this transaction."""
        ...

    async def by_number(self, claim_number: str) -> Claim | None:
        """The claim, locked for this transaction."""
        ...

    async def of_customer(self, customer_id: str) -> list[Claim]:
        """Newest first."""
        ...

    async def due_before(
        self, day: date, statuses: frozenset[ClaimStatus], limit: int
    ) -> list[str]:
        """Ids of tracked claims in `statuses` whose expected completion date is before
        `day`, earliest date first, at most `limit`; not locked (read again with `get`)."""
        ...

    async def add(self, claim: Claim) -> None: ...

    async def save(self, claim: Claim) -> None: ...

    async def next_number(self) -> int:
        """A number never handed out before (gaps allowed)."""
        ...

    async def count_by_status(self) -> dict[ClaimStatus, int]:
        """How many claims are in each status (a status without claims is absent)."""
        ...


class Submissions(Protocol):
    """Idempotency keys of customers' claim submissions, unique per customer and key."""

    async def get(self, customer_id: str, key: str) -> IdempotencyRecord | None: ...

    async def add(self, record: IdempotencyRecord) -> None: ...


class HandledMessages(Protocol):
    """Claims-handling commands applied, unique per source system and message id."""

    async def get(self, source_system: str, message_id: str) -> HandledMessage | None: ...

    async def add(self, message: HandledMessage) -> None: ...


class Preferences(Protocol):
    """CL-5: the customer's default channel for claim updates."""

    async def default_channel(self, customer_id: str) -> NotificationChannel | None: ...

    async def set_default_channel(self, customer_id: str, channel: NotificationChannel) -> None: ...


class ClaimsUnitOfWork(UnitOfWork, Protocol):
    @property
    def policies(self) -> Policies: ...

    @property
    def claims(self) -> Claims: ...

    @property
    def submissions(self) -> Submissions: ...

    @property
    def handled(self) -> HandledMessages: ...

    @property
    def preferences(self) -> Preferences: ...

    @property
    def blobs(self) -> BlobStore: ...
