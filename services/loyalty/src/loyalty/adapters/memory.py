"""In-memory twins of the loyalty projections, for unit tests of the handlers.

Same rules as PostgreSQL: a fact is stored once per (customer, event id), the first
version wins; each announcement is recorded once per customer; a statement snapshot is
never replaced by an older one; the account version is the account stream's length in
the event log of the same unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from servicekit.memory import InMemoryEventLog, InMemoryUnitOfWork, memory_transactions
from servicekit.unit_of_work import Transactions

from loyalty.domain.facts import CustomerFact, Fact
from loyalty.unit_of_work import Account, LoyaltyUnitOfWork, Settled, account_stream


class InMemoryFacts:
    def __init__(self, events: InMemoryEventLog) -> None:
        self._events = events
        self.rows: dict[tuple[str, str], Fact] = {}

    async def add(self, rows: Sequence[CustomerFact]) -> None:
        for customer_id, fact in rows:
            self.rows.setdefault((customer_id, fact.event_id), fact)

    async def account(
        self, customer_id: str, after: datetime | None = None, settled_at: datetime | None = None
    ) -> Account:
        version = await self._events.stream_version(account_stream(customer_id))
        mine = [fact for (c, _), fact in self.rows.items() if c == customer_id]
        facts = tuple(x for x in mine if after is None or x.occurred_at > after)
        if settled_at is None:
            return Account(customer_id, version, facts)
        ids = [x.event_id for x in mine if x.occurred_at <= settled_at]
        checksum = sum(hash(i) for i in ids)
        return Account(customer_id, version, facts, Settled(settled_at, len(ids), checksum))

    async def customers(self, after: str, limit: int) -> list[str]:
        return sorted({c for c, _ in self.rows if c > after})[:limit]

    async def clear(self) -> None:
        self.rows.clear()


class InMemoryAnnouncements:
    def __init__(self) -> None:
        self.keys: set[tuple[str, str]] = set()
        self.locked = 0

    async def first_time(self, customer_id: str, keys: Sequence[str]) -> set[str]:
        fresh = {key for key in keys if (customer_id, key) not in self.keys}
        self.keys.update((customer_id, key) for key in fresh)
        return fresh

    async def one_run_at_a_time(self) -> None:
        self.locked += 1


class InMemoryStatements:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[datetime, int, str]] = {}

    async def save(self, customer_id: str, as_of: datetime, balance: int, membership: str) -> None:
        known = self.rows.get(customer_id)
        if known is None or known[0] <= as_of:
            self.rows[customer_id] = (as_of, balance, membership)

    async def clear(self) -> None:
        self.rows.clear()


class InMemoryLoyaltyUnitOfWork(InMemoryUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.facts = InMemoryFacts(self.events)
        self.announcements = InMemoryAnnouncements()
        self.statements = InMemoryStatements()


def transactions(uow: InMemoryLoyaltyUnitOfWork | None = None) -> Transactions[LoyaltyUnitOfWork]:
    """Transactions over one in-memory unit of work (rolled back when the work raises)."""
    unit: LoyaltyUnitOfWork = uow if uow is not None else InMemoryLoyaltyUnitOfWork()
    return memory_transactions(unit)
