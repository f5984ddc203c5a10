"""Unit-test world: the identity handlers on the in-memory unit of work with the real
cryptography adapters (argon2id at OWASP's minimum), a fixed clock, and helpers that
read codes from the events bound for the notifier (the only place codes travel)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from contracts_schemas import identity as ev
from contracts_schemas.base import Contract
from contracts_schemas.common import Carrier, PolicyholderDetails, PostalAddress, ProductLine
from contracts_schemas.contracts import PolicyIssued
from identity import commands as c
from identity.adapters.memory import InMemoryIdentityUnitOfWork
from identity.adapters.security import (
    Argon2Hasher,
    Ed25519Devices,
    Ed25519Signer,
    LibraryPasswordChecks,
    RandomSecrets,
)
from identity.domain.model import Address, Outcome
from identity.handlers import Identity, IdentityConfig, Refused
from servicekit.clock import FixedClock
from servicekit.memory import memory_transactions

E = TypeVar("E", bound=Contract)
C = TypeVar("C")

PASSWORD = "Kiefernzapfen-Morgenrot-7"
ADDRESS = Address("Erika Mustermann", "Heidestraße 17", "51147", "Köln")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class World:
    def __init__(self, hasher: Argon2Hasher | None = None) -> None:
        self.clock = FixedClock(START)
        self.uow = InMemoryIdentityUnitOfWork()
        self.transactions = memory_transactions(self.uow)
        self.identity = Identity(
            clock=self.clock, wall=self.clock, hasher=hasher or SHARED_HASHER,
            checks=LibraryPasswordChecks(), secrets=RandomSecrets(b"p" * 32),
            signer=Ed25519Signer(), device_signatures=Ed25519Devices(), config=IdentityConfig(),
        )  # fmt: skip

    async def run(self, handler: Callable[[C, Any], Awaitable[Any]], command: C) -> Any:
        return await self.transactions.execute(handler, command)

    def published(self, kind: type[E]) -> list[E]:
        return [m for m in self.uow.events.published if isinstance(m, kind)]

    def last(self, kind: type[E]) -> E:
        found = self.published(kind)
        assert found, f"no {kind.__name__} published"
        return found[-1]

    def advance(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta))

    async def register(
        self, username: str = "erika", *, policy_number: str | None = None,
        password: str = PASSWORD, email: str = "erika@example.org",
    ) -> Outcome:  # fmt: skip
        result = await self.run(self.identity.register, c.Register(
            username=username, password=password, first_name="Erika", last_name="Mustermann",
            birth_date=date(1980, 5, 17), address=ADDRESS, email=email,
            policy_number=policy_number,
        ))  # fmt: skip
        assert isinstance(result, Outcome)
        return result

    def customer_id(self, username: str = "erika") -> str:
        account = next(a for a in self.uow.accounts.rows.values() if a.username == username)
        return account.customer_id

    async def login(self, username: str = "erika", password: str = PASSWORD,
                    client: str = "198.51.100.7", **extra: Any) -> Outcome | Refused:  # fmt: skip
        result: Outcome | Refused = await self.run(
            self.identity.login, c.Login(username, password, client, **extra)
        )
        return result

    async def tokens(self, username: str = "erika") -> dict[str, Any]:
        result = await self.login(username)
        assert isinstance(result, Outcome), result
        assert result.status == "authenticated", result
        return dict(result.data)

    async def enable_two_factor(self, customer_id: str, mobile: str = "+4915112345678") -> None:
        await self.run(self.identity.start_two_factor, c.StartTwoFactor(customer_id, mobile))
        code = self.last(ev.MtanRequested).code
        result = await self.run(self.identity.confirm_mobile, c.ConfirmMobile(customer_id, code))
        assert isinstance(result, Outcome), result
        assert result.status == "mobile_confirmed", result

    async def confirmed_mtan(self, customer_id: str, purpose: str, reference: str) -> str:
        sent = await self.run(
            self.identity.request_mtan, c.RequestMtan(customer_id, purpose, reference)
        )
        mtan_id = str(sent.data["mtan_id"])
        code = self.last(ev.MtanRequested).code
        confirmed = await self.run(
            self.identity.confirm_mtan, c.ConfirmMtan(customer_id, mtan_id, code)
        )
        assert confirmed.status == "mtan_confirmed"
        return mtan_id


SHARED_HASHER = Argon2Hasher()


#: The address on the policy (ID-3): letters go here, never to the one typed at registration.
POLICY_ADDRESS = PostalAddress(
    recipient="Frau Erika Mustermann", street="Am Policenweg 3", postal_code="80331",
    city="München",
)  # fmt: skip


def holder(
    customer_id: str, given_name: str = "Erika", family_name: str = "Mustermann",
    birth_date: date = date(1980, 5, 17), address: PostalAddress = POLICY_ADDRESS,
) -> PolicyholderDetails:  # fmt: skip
    """A policyholder as policy administration has them on file (the registrant's data)."""
    return PolicyholderDetails(
        customer_id=customer_id, given_name=given_name, family_name=family_name,
        birth_date=birth_date, postal_address=address,
    )  # fmt: skip


def policy_issued(
    number: str, holders: tuple[str, ...], carrier: Carrier,
    details: tuple[PolicyholderDetails, ...] = (), at: datetime = START,
) -> PolicyIssued:  # fmt: skip
    """contracts' PolicyIssued; without `details` as older events were (no holder data)."""
    return PolicyIssued(
        event_id=uuid.uuid4(), aggregate_id=f"pol-{number}", aggregate_version=1,
        occurred_at=at, customer_ids=holders, policy_id=f"pol-{number}",
        policy_number=number, product_line=ProductLine.MOTOR, carrier=carrier,
        point_relevant=True, policyholder_ids=holders, start_date=date(2020, 1, 1),
        policyholders=details,
    )  # fmt: skip
