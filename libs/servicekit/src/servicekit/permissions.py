"""Which internal system may call which internal operations (OWASP API5, function level
authorisation).

Service credentials say who calls; the operations a system owns say what it may do. The
mapping is configuration (`PORTAL_SYSTEM_OPERATIONS`, JSON: system name -> operation
names), so each environment grants only what its systems need. Routes declare the
operation they belong to with `servicekit.http.requires(Operation.X)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class Operation(StrEnum):
    """Groups of internal endpoints, each owned by the systems that need them."""

    POLICIES = "policies"  # policy administration delivers policies (contracts, CT-1)
    PAYMENTS = "payments"  # collections report premium payments (contracts)
    JOBS = "jobs"  # operators start runs and scheduled jobs (loyalty runs)
    DELIVERIES = "deliveries"  # operators inspect notifier deliveries and statistics
    REPLAYS = "replays"  # operators replay failed deliveries or dead letters
    DOCUMENTS = "documents"  # output management delivers mailbox documents (DOC-1)
    CLAIMS = "claims"  # claims handling moves claims through their lifecycle (CL-4)
    PRINTS = "prints"  # the letter channel fetches documents that go by post (DOC-4)
    MTAN = "mtan"  # services ask identity for mTANs and consume them (ID-6; contracts, CT-4)


DEFAULT_SYSTEM_OPERATIONS: Mapping[str, tuple[Operation, ...]] = {
    "policy-admin": (Operation.POLICIES,),
    "collections": (Operation.PAYMENTS,),
    "output-management": (Operation.DOCUMENTS,),
    "operators": (Operation.JOBS, Operation.DELIVERIES, Operation.REPLAYS, Operation.CLAIMS),
    "claims-handling": (Operation.CLAIMS,),
    "notifier": (Operation.PRINTS,),
    "contracts": (Operation.MTAN,),
}


class SystemPermissions:
    """Deny by default: a system not named, or an operation not granted, is refused."""

    def __init__(self, operations: Mapping[str, Iterable[str]]) -> None:
        self._granted = {
            system: frozenset(Operation(name) for name in names)
            for system, names in operations.items()
        }

    def allows(self, system: str, operation: Operation) -> bool:
        return operation in self._granted.get(system, frozenset())

    def granted(self, system: str) -> frozenset[Operation]:
        return self._granted.get(system, frozenset())
