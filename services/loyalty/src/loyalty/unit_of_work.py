"""What the loyalty handlers may touch inside one transaction (the unit of work).

Besides servicekit's event log (the account streams and the outbox) and inbox, the
loyalty service keeps three projections, each rebuildable from the topics: the facts
every ledger is folded from, the announcements already published by the runs, and the
operators' statement snapshot. PostgreSQL implementations: `adapters/postgres.py`;
in-memory twins with the same uniqueness rules: `adapters/memory.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from servicekit.unit_of_work import UnitOfWork

from loyalty.domain.facts import CustomerFact, Fact


def account_stream(customer_id: str) -> str:
    """The stream of a customer's loyalty decisions (enrolment, redemptions)."""
    return f"account-{customer_id}"


@dataclass(frozen=True, slots=True)
class Settled:
    """How many of a customer's facts occurred at or before `cut`, and a checksum of their
    event ids. Facts are only ever added (or all cleared for a rebuild), so the same
    count and checksum later mean the same facts: a snapshot of them is still good."""

    cut: datetime
    count: int
    checksum: int


@dataclass(frozen=True, slots=True)
class Account:
    """A customer's facts and the version of their account stream, from ONE read: a
    decision taken on these facts appends at `version`, so a decision recorded by anyone
    else in between makes the append conflict (and the decision is taken again)."""

    customer_id: str
    version: int
    facts: tuple[Fact, ...]
    settled: Settled | None = None


class FactRepository(Protocol):
    async def add(self, rows: Sequence[CustomerFact]) -> None:
        """Store facts; a fact already stored for that customer stays as it is (LOY-12)."""
        ...

    async def account(
        self, customer_id: str, after: datetime | None = None, settled_at: datetime | None = None
    ) -> Account:
        """The customer's facts (only those that occurred after `after`, when given) and
        account stream version, read together; with `settled_at`, also what is `Settled`
        at that time - all in one read."""
        ...

    async def customers(self, after: str, limit: int) -> list[str]:
        """Customers with any fact, in id order, after `after` (chunks of a run)."""
        ...

    async def clear(self) -> None:
        """Forget every fact (a rebuild refills them from the topics)."""
        ...


class Announcements(Protocol):
    async def first_time(self, customer_id: str, keys: Sequence[str]) -> set[str]:
        """Record `keys` as announced for the customer; returns those not announced
        before (two runs at once: each key is returned to exactly one of them)."""
        ...

    async def one_run_at_a_time(self) -> None:
        """Wait until no other run is announcing (held until the transaction ends)."""
        ...


class Statements(Protocol):
    async def save(self, customer_id: str, as_of: datetime, balance: int, membership: str) -> None:
        """The operators' snapshot; a snapshot as of an earlier time never replaces it."""
        ...

    async def clear(self) -> None: ...


class LoyaltyUnitOfWork(UnitOfWork, Protocol):
    """Read-only members, like servicekit's, so implementations may narrow them."""

    @property
    def facts(self) -> FactRepository: ...

    @property
    def announcements(self) -> Announcements: ...

    @property
    def statements(self) -> Statements: ...
