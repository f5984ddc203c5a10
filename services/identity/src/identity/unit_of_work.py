"""The identity service's unit of work: servicekit's event log and inbox plus its own
repositories. Handlers see only these protocols; adapters/postgres.py and
adapters/memory.py implement them with the same semantics."""

from __future__ import annotations

from typing import Protocol

from servicekit.unit_of_work import UnitOfWork

from identity.domain.model import (
    Account,
    CodeKind,
    Device,
    OneTimeCode,
    Policy,
    RefreshToken,
    Session,
    SigningKey,
    Throttle,
)
from identity.domain.operators import Operator


class UsernameTaken(Exception):
    """Another account has this username key (ID-1: unique case-insensitively)."""


class Accounts(Protocol):
    async def get(self, customer_id: str) -> Account | None:
        """The account, locked for this transaction."""
        ...

    async def by_username(self, key: str) -> Account | None: ...

    async def by_email(self, email: str) -> list[Account]: ...

    async def add(self, account: Account) -> None:
        """Raises UsernameTaken when the username key (or the id) exists."""
        ...

    async def save(self, account: Account) -> None: ...


class Codes(Protocol):
    async def add(self, code: OneTimeCode) -> None: ...

    async def get(self, code_id: str) -> OneTimeCode | None: ...

    async def of_customer(self, customer_id: str, kind: CodeKind) -> list[OneTimeCode]: ...

    async def save(self, code: OneTimeCode) -> None: ...


class Sessions(Protocol):
    async def add(self, session: Session) -> None: ...

    async def get(self, session_id: str) -> Session | None: ...

    async def of_customer(self, customer_id: str) -> list[Session]: ...

    async def save(self, session: Session) -> None: ...

    async def add_refresh(self, token: RefreshToken) -> None: ...

    async def refresh(self, token_hash: str) -> RefreshToken | None: ...

    async def save_refresh(self, token: RefreshToken) -> None: ...


class Devices(Protocol):
    async def add(self, device: Device) -> None: ...

    async def get(self, device_id: str) -> Device | None: ...

    async def of_customer(self, customer_id: str) -> list[Device]: ...

    async def save(self, device: Device) -> None: ...


class Throttles(Protocol):
    async def get(self, key: str) -> Throttle:
        """The throttle of `key` (a fresh one when none is stored), locked."""
        ...

    async def save(self, throttle: Throttle) -> None: ...


class Policies(Protocol):
    async def get(self, policy_id: str) -> Policy | None: ...

    async def by_number(self, policy_number: str) -> Policy | None: ...

    async def of_holder(self, customer_id: str) -> list[Policy]: ...

    async def save(self, policy: Policy) -> None: ...


class SigningKeys(Protocol):
    async def all(self) -> list[SigningKey]: ...

    async def add(self, key: SigningKey) -> None: ...

    async def save(self, key: SigningKey) -> None: ...


class IdentityUnitOfWork(UnitOfWork, Protocol):
    """Read-only members, so that implementations may narrow the repository types."""

    @property
    def accounts(self) -> Accounts: ...

    @property
    def codes(self) -> Codes: ...

    @property
    def sessions(self) -> Sessions: ...

    @property
    def devices(self) -> Devices: ...

    @property
    def throttles(self) -> Throttles: ...

    @property
    def policies(self) -> Policies: ...

    @property
    def signing_keys(self) -> SigningKeys: ...

    @property
    def operators(self) -> Operators: ...


class OperatorTaken(Exception):
    """An operator with this username exists."""


class Operators(Protocol):
    async def by_username(self, key: str) -> Operator | None:
        """The operator, locked for this transaction."""
        ...

    async def add(self, operator: Operator) -> None:
        """Raises OperatorTaken when the username key (or the id) exists."""
        ...

    async def save(self, operator: Operator) -> None: ...
