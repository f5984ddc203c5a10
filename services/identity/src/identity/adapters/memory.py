"""In-memory repositories for unit tests, with the PostgreSQL ones' semantics: unique
username keys, copies in and out (a handler's object is not the stored row)."""

from __future__ import annotations

import copy
from typing import TypeVar

from servicekit.memory import InMemoryUnitOfWork

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
from identity.unit_of_work import OperatorTaken, UsernameTaken

T = TypeVar("T")


def _copy(value: T) -> T:
    return copy.deepcopy(value)


class MemoryAccounts:
    def __init__(self) -> None:
        self.rows: dict[str, Account] = {}

    async def get(self, customer_id: str) -> Account | None:
        return _copy(self.rows.get(customer_id))

    async def by_username(self, key: str) -> Account | None:
        return _copy(next((a for a in self.rows.values() if a.username_key == key), None))

    async def by_email(self, email: str) -> list[Account]:
        return [_copy(a) for a in self.rows.values() if a.email == email]

    async def add(self, account: Account) -> None:
        if account.customer_id in self.rows or any(
            a.username_key == account.username_key for a in self.rows.values()
        ):
            raise UsernameTaken(account.username)
        self.rows[account.customer_id] = _copy(account)

    async def save(self, account: Account) -> None:
        self.rows[account.customer_id] = _copy(account)


class MemoryCodes:
    def __init__(self) -> None:
        self.rows: dict[str, OneTimeCode] = {}

    async def add(self, code: OneTimeCode) -> None:
        self.rows[code.code_id] = _copy(code)

    async def get(self, code_id: str) -> OneTimeCode | None:
        return _copy(self.rows.get(code_id))

    async def of_customer(self, customer_id: str, kind: CodeKind) -> list[OneTimeCode]:
        return [
            _copy(c) for c in self.rows.values() if c.customer_id == customer_id and c.kind == kind
        ]

    async def save(self, code: OneTimeCode) -> None:
        self.rows[code.code_id] = _copy(code)


class MemorySessions:
    def __init__(self) -> None:
        self.rows: dict[str, Session] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}

    async def add(self, session: Session) -> None:
        self.rows[session.session_id] = _copy(session)

    async def get(self, session_id: str) -> Session | None:
        return _copy(self.rows.get(session_id))

    async def of_customer(self, customer_id: str) -> list[Session]:
        return [_copy(s) for s in self.rows.values() if s.customer_id == customer_id]

    async def save(self, session: Session) -> None:
        self.rows[session.session_id] = _copy(session)

    async def add_refresh(self, token: RefreshToken) -> None:
        self.refresh_tokens[token.token_hash] = _copy(token)

    async def refresh(self, token_hash: str) -> RefreshToken | None:
        return _copy(self.refresh_tokens.get(token_hash))

    async def save_refresh(self, token: RefreshToken) -> None:
        self.refresh_tokens[token.token_hash] = _copy(token)


class MemoryDevices:
    def __init__(self) -> None:
        self.rows: dict[str, Device] = {}

    async def add(self, device: Device) -> None:
        self.rows[device.device_id] = _copy(device)

    async def get(self, device_id: str) -> Device | None:
        return _copy(self.rows.get(device_id))

    async def of_customer(self, customer_id: str) -> list[Device]:
        return [_copy(d) for d in self.rows.values() if d.customer_id == customer_id]

    async def save(self, device: Device) -> None:
        self.rows[device.device_id] = _copy(device)


class MemoryThrottles:
    def __init__(self) -> None:
        self.rows: dict[str, Throttle] = {}

    async def get(self, key: str) -> Throttle:
        return _copy(self.rows.get(key)) or Throttle(key)

    async def save(self, throttle: Throttle) -> None:
        self.rows[throttle.key] = _copy(throttle)


class MemoryPolicies:
    def __init__(self) -> None:
        self.rows: dict[str, Policy] = {}

    async def get(self, policy_id: str) -> Policy | None:
        return _copy(self.rows.get(policy_id))

    async def by_number(self, policy_number: str) -> Policy | None:
        return _copy(
            next((p for p in self.rows.values() if p.policy_number == policy_number), None)
        )

    async def of_holder(self, customer_id: str) -> list[Policy]:
        return [_copy(p) for p in self.rows.values() if customer_id in p.policyholder_ids]

    async def save(self, policy: Policy) -> None:
        self.rows[policy.policy_id] = _copy(policy)


class MemorySigningKeys:
    def __init__(self) -> None:
        self.rows: dict[str, SigningKey] = {}

    async def all(self) -> list[SigningKey]:
        return [_copy(k) for k in self.rows.values()]

    async def add(self, key: SigningKey) -> None:
        self.rows[key.kid] = _copy(key)

    async def save(self, key: SigningKey) -> None:
        self.rows[key.kid] = _copy(key)


class InMemoryIdentityUnitOfWork(InMemoryUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.accounts = MemoryAccounts()
        self.codes = MemoryCodes()
        self.sessions = MemorySessions()
        self.devices = MemoryDevices()
        self.throttles = MemoryThrottles()
        self.policies = MemoryPolicies()
        self.signing_keys = MemorySigningKeys()
        self.operators = MemoryOperators()


class MemoryOperators:
    def __init__(self) -> None:
        self.rows: dict[str, Operator] = {}

    async def by_username(self, key: str) -> Operator | None:
        return _copy(next((o for o in self.rows.values() if o.username_key == key), None))

    async def add(self, operator: Operator) -> None:
        if operator.operator_id in self.rows or any(
            o.username_key == operator.username_key for o in self.rows.values()
        ):
            raise OperatorTaken(operator.username)
        self.rows[operator.operator_id] = _copy(operator)

    async def save(self, operator: Operator) -> None:
        self.rows[operator.operator_id] = _copy(operator)
