"""A claims service on the in-memory unit of work, a business clock and helpers to build
contracts' events - shared by the unit tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from claims import commands as c
from claims.adapters.memory import InMemoryClaimsUnitOfWork
from claims.domain.calendar import WorkingDays
from claims.domain.lifecycle import Schedule, Step
from claims.domain.model import Claim
from claims.handlers import ClaimsHandlers
from contracts_schemas.claims import ClaimTransition, ClaimType
from contracts_schemas.common import Carrier, ProductLine
from contracts_schemas.contracts import PolicyIssued
from servicekit.clock import FixedClock
from servicekit.memory import memory_transactions
from servicekit.unit_of_work import Transactions
from servicekit.uploads import UploadPolicy

T = TypeVar("T")

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"


def policy_issued(
    policy_id: str,
    holders: tuple[str, ...],
    line: ProductLine = ProductLine.HOUSEHOLD_CONTENTS,
    carrier: Carrier = Carrier.ALLIANZ_VERSICHERUNGS_AG,
    start: date = date(2020, 1, 1),
    **extra: Any,
) -> PolicyIssued:
    return PolicyIssued(
        event_id=uuid.uuid4(), aggregate_id=policy_id, aggregate_version=1,
        occurred_at=datetime(2020, 1, 1, tzinfo=UTC), customer_ids=holders,
        policy_id=policy_id, policy_number=f"NR-{policy_id}", product_line=line,
        carrier=carrier, point_relevant=True, policyholder_ids=holders, start_date=start,
        **extra,
    )  # fmt: skip


@dataclass
class World:
    # Tuesday 2026-03-03, 10:00 Berlin
    clock: FixedClock = field(
        default_factory=lambda: FixedClock(datetime(2026, 3, 3, 9, 0, tzinfo=UTC))
    )
    uow: InMemoryClaimsUnitOfWork = field(default_factory=InMemoryClaimsUnitOfWork)
    max_upload: int = 1024 * 1024

    def __post_init__(self) -> None:
        self.handlers = ClaimsHandlers(
            self.clock, Schedule(WorkingDays()), UploadPolicy(max_bytes=self.max_upload)
        )
        self.transactions: Transactions[InMemoryClaimsUnitOfWork] = memory_transactions(self.uow)

    async def run(self, handler: Any, command: Any) -> Any:
        return await self.transactions.execute(handler, command)

    async def policies(self, *events: PolicyIssued) -> None:
        await self.transactions.run(lambda uow: self.handlers.record_policies(events, uow))

    async def report(self, customer: str = "C-1", policy: str = "P-1", **kw: Any) -> Claim:
        fields: dict[str, Any] = {
            "customer_id": customer, "policy_id": policy, "claim_type": ClaimType.HOUSEHOLD,
            "incident_date": date(2026, 3, 1), "place": "Köln, Heidestraße 17",
            "description": "Wasserschaden in der Küche",
            "files": (c.File("kueche.png", PNG, "image/png"),),
        }  # fmt: skip
        fields.update(kw)
        claim: Claim = await self.run(self.handlers.report, c.ReportClaim(**fields))
        return claim

    async def move(
        self, claim: Claim, transition: ClaimTransition, message_id: str | None = None,
        **kw: Any,
    ) -> Claim:  # fmt: skip
        command = c.MoveClaim(
            "claims-handling",
            message_id or uuid.uuid4().hex,
            claim.claim_number,
            Step(transition, **kw),
        )
        moved: Claim = await self.run(self.handlers.move, command)
        return moved

    def advance_days(self, days: int) -> None:
        self.clock.advance(timedelta(days=days))

    def published(self, kind: type[T]) -> list[T]:
        return [m for m in self.uow.events.published if isinstance(m, kind)]
