"""Messages as identity and the upstream insurance systems publish them, and the people
who register in the end-to-end tests."""

from __future__ import annotations

import base64
import random
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from contracts_schemas import common, identity, upstream
from contracts_schemas.common import Carrier, PostalAddress, ProductLine

# ID-3: the holders' details on PolicyIssued (name, birth date, address) - sent when the
# schema has them, so identity can match a registration on them.
_HOLDER_DETAILS = "policyholders" in upstream.PolicyIssuedUpstream.model_fields
PolicyholderDetails: Any = getattr(common, "PolicyholderDetails", None)


def registered(
    customer_id: str, at: datetime, birth: date = date(1980, 5, 17)
) -> identity.CustomerRegistered:
    return identity.CustomerRegistered(
        event_id=uuid.uuid4(), aggregate_id=customer_id, aggregate_version=1, occurred_at=at,
        customer_ids=(customer_id,), customer_id=customer_id, first_name="Erika",
        last_name="Mustermann", birth_date=birth,
        address=PostalAddress(recipient="Erika Mustermann", street="Königinstraße 28",
                              postal_code="80802", city="München"),
        email=f"{customer_id}@example.org",
    )  # fmt: skip


def account_activated(customer_id: str, at: datetime) -> identity.AccountActivated:
    return identity.AccountActivated(
        event_id=uuid.uuid4(), aggregate_id=customer_id, aggregate_version=2, occurred_at=at,
        customer_ids=(customer_id,), customer_id=customer_id,
    )  # fmt: skip


def account_cancelled(customer_id: str, at: datetime) -> identity.AccountCancelled:
    return identity.AccountCancelled(
        event_id=uuid.uuid4(), aggregate_id=customer_id, aggregate_version=3, occurred_at=at,
        customer_ids=(customer_id,), customer_id=customer_id,
    )  # fmt: skip


def policy_issued(
    number: str, holders: tuple[str, ...], start: date, at: datetime,
    line: ProductLine = ProductLine.HOUSEHOLD_CONTENTS,
) -> upstream.PolicyIssuedUpstream:  # fmt: skip
    return upstream.PolicyIssuedUpstream(
        message_id=f"pa-{uuid.uuid4().hex}", source_system="policy-admin", occurred_at=at,
        policy_number=number, product_line=line, carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG,
        policyholder_ids=holders, start_date=start, tariff="Hausrat Komfort",
        annual_premium_cents=14_460,
    )  # fmt: skip


def premium_paid(number: str, cents: int, at: datetime) -> upstream.PremiumPaidUpstream:
    return upstream.PremiumPaidUpstream(
        message_id=f"co-{uuid.uuid4().hex}", source_system="collections", occurred_at=at,
        policy_number=number, payment_id=f"pay-{uuid.uuid4().hex[:10]}", amount_cents=cents,
    )  # fmt: skip


# --------------------------------------------------------------------------- customers


PASSWORD = "Wolkenkratzer-Segelboot-Tangente-42"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _letters(n: int) -> str:
    """Random lower-case letters: names and usernames that never collide between tests."""
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


@dataclass
class Person:
    """Someone who will register: the details policy administration has on file too."""

    first_name: str
    last_name: str
    birth_date: date
    username: str
    email: str
    mobile: str
    holder_id: str  # the policyholder id policy administration gave them
    customer_id: str = ""

    @property
    def recipient(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def address(self) -> PostalAddress:
        return PostalAddress(recipient=self.recipient, street="Heidestraße 17",
                             postal_code="51147", city="Köln")  # fmt: skip

    def registration(self, policy_number: str | None) -> dict[str, Any]:
        return {
            "username": self.username, "password": PASSWORD, "first_name": self.first_name,
            "last_name": self.last_name, "birth_date": self.birth_date.isoformat(),
            "email": self.email, "address": self.address.model_dump(mode="json"),
            "policy_number": policy_number,
        }  # fmt: skip

    def details(self) -> Any:
        return PolicyholderDetails(
            customer_id=self.holder_id, given_name=self.first_name,
            family_name=self.last_name, birth_date=self.birth_date,
            postal_address=self.address,
        )  # fmt: skip


def new_person() -> Person:
    suffix = _letters(8)
    return Person(
        first_name="Erika", last_name=f"Muster{suffix}", birth_date=date(1980, 5, 17),
        username=f"e2e{suffix}", email=f"{suffix}@e2e.example.org",
        mobile="+4915" + "".join(random.choice(string.digits) for _ in range(9)),
        holder_id=f"P-{uuid.uuid4().hex[:12]}",
    )  # fmt: skip


def issued_to(
    number: str, person: Person, at: datetime, line: ProductLine = ProductLine.HOUSEHOLD_CONTENTS,
    carrier: Carrier = Carrier.ALLIANZ_VERSICHERUNGS_AG,
) -> upstream.PolicyIssuedUpstream:  # fmt: skip
    """A policy of which `person` is the sole policyholder, with the holder's details that
    identity compares with a registration (ID-3) when the schema carries them."""
    details = {"policyholders": (person.details(),)} if _HOLDER_DETAILS else {}
    return upstream.PolicyIssuedUpstream(
        message_id=f"pa-{uuid.uuid4().hex}", source_system="policy-admin", occurred_at=at,
        policy_number=number, product_line=line, carrier=carrier,
        policyholder_ids=(person.holder_id,), start_date=at.date(), tariff="Hausrat Komfort",
        annual_premium_cents=14_460, **details,
    )  # fmt: skip


def document_for(
    customer_id: str, policy_number: str, title: str, *, sensitive: bool = False,
    category: str = "contract", content: bytes = PDF, written_form: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """What output management posts to documents' `POST /internal/documents` (DOC-1)."""
    return {
        "message_id": f"om-{uuid.uuid4().hex}", "occurred_at": datetime.now(UTC).isoformat(),
        "policy_number": policy_number, "customer_id": customer_id, "category": category,
        "title": title, "sensitive": sensitive, "written_form": written_form,
        "filename": "dokument.pdf", "content_base64": base64.b64encode(content).decode(),
    }  # fmt: skip
