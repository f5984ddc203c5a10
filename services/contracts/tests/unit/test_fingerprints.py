"""CT-1/CT-4: a request's fingerprint never changes meaning. The values below were
recorded by the fingerprint as it was before it was made cheaper (json.dumps with
sort_keys per call, 2026-11-27): a stored record must still match its request replayed."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from contracts.adapters.memory import InMemoryContractsUnitOfWork
from contracts.domain import idempotency as idem
from contracts.domain.catalogue import Catalogue
from contracts.handlers import Contracts, Recorded, UpstreamInput
from contracts_schemas.common import Carrier, PolicyholderDetails, PostalAddress, ProductLine
from contracts_schemas.upstream import (
    PolicyCancelledUpstream,
    PolicyholdersChangedUpstream,
    PolicyIssuedUpstream,
    PremiumPaidUpstream,
)
from servicekit.clock import FixedClock
from servicekit.memory import memory_transactions

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ADDRESS = PostalAddress(
    recipient='Jürgen "Jü" Ößwald', street="Königstraße 1\\a", postal_code="70173",
    city="Stuttgart",
)  # fmt: skip
ISSUED = PolicyIssuedUpstream(
    message_id="pa-1", source_system="policy-admin",
    occurred_at=T0.astimezone(timezone(timedelta(hours=1))), policy_number="AS-1000",
    product_line=ProductLine.LIABILITY, carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG,
    policyholder_ids=("cust-anna",), start_date=date(2026, 1, 1),
    tariff="Privathaftpflicht Komfort – Ü €", annual_premium_cents=12000,
)  # fmt: skip
WITH_DETAILS = PolicyIssuedUpstream(
    message_id="pa-2", source_system="policy-admin", occurred_at=T0, policy_number="AS-1001",
    product_line=ProductLine.LIABILITY, carrier=Carrier.ALLIANZ_VERSICHERUNGS_AG,
    policyholder_ids=("cust-jü",), start_date=date(2026, 1, 1), tariff="T",
    annual_premium_cents=1,
    policyholders=(PolicyholderDetails(
        customer_id="cust-jü", given_name="Jürgen", family_name="Ößwald",
        birth_date=date(1970, 5, 17), postal_address=ADDRESS,
    ),),
)  # fmt: skip
PAID = PremiumPaidUpstream(
    message_id="co-1", source_system="collections", occurred_at=T0, policy_number="AS 1000",
    payment_id="pay-1", amount_cents=1000,
)  # fmt: skip
CANCELLED = PolicyCancelledUpstream(
    message_id="pa-3", source_system="policy-admin", occurred_at=T0, policy_number="AS-1000",
    effective_date=date(2026, 12, 31),
)  # fmt: skip
HOLDERS = PolicyholdersChangedUpstream(
    message_id="pa-4", source_system="policy-admin", occurred_at=T0, policy_number="AS-1000",
    policyholder_ids=("a", "b"), effective_date=date(2026, 4, 1),
)  # fmt: skip

RECORDED_UPSTREAM: list[tuple[UpstreamInput, str]] = [
    (ISSUED, "cbed9ffd3ca79017aa9539dc1cec13d00cca4ee3e9b0ae50aa432a0cf6a8186d"),
    (WITH_DETAILS, "9ef6fd70fa4ec747e0c765c0b22b68c38aabb855337a5c6f5af7d3e9f7d6d041"),
    (PAID, "354e5d24a52da86722271d90b68377de110d751493b309d7274326f483989789"),
    (CANCELLED, "d3cdc4dbbb448e8c33d45157ccaf06a623920137699cdffc47be5c7170bcfd88"),
    (HOLDERS, "eb56fdca370c7d637527f8c9d70a09e70833693b41942e7bc19704c5f12fc837"),
]


@pytest.mark.parametrize(("message", "recorded"), RECORDED_UPSTREAM)
def test_ct1_an_upstream_message_has_the_fingerprint_recorded_for_it_before(
    message: UpstreamInput, recorded: str
) -> None:
    assert idem.upstream_fingerprint(message) == recorded


def test_ct4_a_customers_request_body_has_the_fingerprint_recorded_for_it_before() -> None:
    iban = {"iban": "DE89370400440532013000"}
    move = {"new_address": ADDRESS.model_dump(mode="json"), "moved_on": "2026-04-01"}
    assert idem.fingerprint(iban) == (
        "a97fa2e95aee6d29983c504ae032bf7e7e5a1ecd2b5a86f8c787011c436f1f16"
    )
    assert idem.fingerprint(move) == (
        "c1b3dfe8f92af938977e997e3b5cda02d5b298ff77013a4af1c062928529730a"
    )


async def test_ct1_a_message_recorded_before_is_replayed_with_its_first_answer() -> None:
    """A record stored with the earlier fingerprint: the same message again (Kafka or
    HTTP) is a replay with the recorded event ids, not a reused message id."""
    uow = InMemoryContractsUnitOfWork()
    contracts = Contracts(Catalogue.default(), None, FixedClock(T0))  # type: ignore[arg-type]
    first_ids = (uuid.uuid4(),)
    await uow.requests.record(
        idem.upstream_key(PAID), idem.RecordedRequest(RECORDED_UPSTREAM[2][1], first_ids)
    )
    tx = memory_transactions(uow)
    assert await tx.execute(contracts.ingest_many, [PAID]) == [Recorded(first_ids, True)]
    assert await tx.execute(contracts.ingest, PAID) == Recorded(first_ids, True)
