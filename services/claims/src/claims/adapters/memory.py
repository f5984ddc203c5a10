"""In-memory repositories for unit tests, with the PostgreSQL ones' semantics: unique
idempotency keys and handled messages, copies in and out (a handler's object is not the
stored row)."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import date
from typing import TypeVar

from contracts_schemas.claims import ClaimStatus
from contracts_schemas.common import NotificationChannel
from servicekit.memory import InMemoryUnitOfWork
from servicekit.unit_of_work import Conflict
from servicekit.uploads import InMemoryBlobStore

from claims.domain.model import Claim, HandledMessage, IdempotencyRecord, Policy

T = TypeVar("T")


def _copy(value: T) -> T:
    return copy.deepcopy(value)


class MemoryPolicies:
    def __init__(self) -> None:
        self.rows: dict[str, Policy] = {}

    async def get(self, policy_id: str) -> Policy | None:
        return self.rows.get(policy_id)

    async def save(self, policy: Policy) -> None:
        self.rows[policy.policy_id] = policy


class MemoryClaims:
    def __init__(self) -> None:
        self.rows: dict[str, Claim] = {}
        self.sequence = 0

    async def get(self, claim_id: str) -> Claim | None:
        return _copy(self.rows.get(claim_id))

    async def by_number(self, claim_number: str) -> Claim | None:
        found = next((c for c in self.rows.values() if c.claim_number == claim_number), None)
        return _copy(found)

    async def of_customer(self, customer_id: str) -> list[Claim]:
        own = [c for c in self.rows.values() if c.customer_id == customer_id]
        return _copy(sorted(own, key=lambda c: (c.reported_at, c.claim_number), reverse=True))

    async def due_before(
        self, day: date, statuses: frozenset[ClaimStatus], limit: int
    ) -> list[str]:
        due = [
            c for c in self.rows.values()
            if c.trackable and c.status in statuses
            and c.expected_completion_date is not None and c.expected_completion_date < day
        ]  # fmt: skip
        due.sort(key=lambda c: (c.expected_completion_date or day, c.claim_id))
        return [c.claim_id for c in due[:limit]]

    async def add(self, claim: Claim) -> None:
        if claim.claim_id in self.rows or any(
            c.claim_number == claim.claim_number for c in self.rows.values()
        ):
            raise Conflict(f"claim {claim.claim_id} exists")
        self.rows[claim.claim_id] = _copy(claim)

    async def save(self, claim: Claim) -> None:
        self.rows[claim.claim_id] = _copy(claim)

    async def next_number(self) -> int:
        self.sequence += 1
        return self.sequence

    async def count_by_status(self) -> dict[ClaimStatus, int]:
        return dict(Counter(c.status for c in self.rows.values()))


class MemorySubmissions:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], IdempotencyRecord] = {}

    async def get(self, customer_id: str, key: str) -> IdempotencyRecord | None:
        return self.rows.get((customer_id, key))

    async def add(self, record: IdempotencyRecord) -> None:
        if (record.customer_id, record.key) in self.rows:
            raise Conflict("idempotency key taken meanwhile")
        self.rows[(record.customer_id, record.key)] = record


class MemoryHandledMessages:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], HandledMessage] = {}

    async def get(self, source_system: str, message_id: str) -> HandledMessage | None:
        return self.rows.get((source_system, message_id))

    async def add(self, message: HandledMessage) -> None:
        if (message.source_system, message.message_id) in self.rows:
            raise Conflict("message handled meanwhile")
        self.rows[(message.source_system, message.message_id)] = message


class MemoryPreferences:
    def __init__(self) -> None:
        self.rows: dict[str, NotificationChannel] = {}

    async def default_channel(self, customer_id: str) -> NotificationChannel | None:
        return self.rows.get(customer_id)

    async def set_default_channel(self, customer_id: str, channel: NotificationChannel) -> None:
        self.rows[customer_id] = channel


class InMemoryClaimsUnitOfWork(InMemoryUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.policies = MemoryPolicies()
        self.claims = MemoryClaims()
        self.submissions = MemorySubmissions()
        self.handled = MemoryHandledMessages()
        self.preferences = MemoryPreferences()
        self.blobs = InMemoryBlobStore()
