"""The handlers on the in-memory unit of work (CT-1..CT-5, ID-3, ID-6): each call runs in
a transaction of its own, rolled back when it raises, as on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from contracts.adapters.memory import InMemoryContractsUnitOfWork
from contracts.domain.catalogue import Catalogue
from contracts.domain.errors import CommandRejected, ReasonCode, UpstreamRejected
from contracts.domain.iban import parse_iban
from contracts.domain.idempotency import upstream_fingerprint
from contracts.domain.mtan import (
    BANK_DETAILS_MTAN_PURPOSE,
    MtanConfirmation,
    bank_details_mtan_reference,
)
from contracts.domain.visibility import ContractNotVisible, NotVisibleReason
from contracts.handlers import (
    ChangeBankDetails,
    ContractOf,
    Contracts,
    ReportMove,
    WhyNotVisible,
)
from contracts_schemas import identity
from contracts_schemas.common import PolicyholderDetails, PostalAddress
from contracts_schemas.contracts import (
    BankDetailsChanged,
    MoveReported,
    PolicyholdersChanged,
    PolicyIssued,
    PremiumPaid,
)
from servicekit.clock import FixedClock
from servicekit.memory import memory_transactions
from servicekit.unit_of_work import Transactions

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # conftest's
NOW = T0 + timedelta(days=90)
IBAN = "DE89 3704 0044 0532 0130 00"
OTHER_IBAN = "DE02 1203 0000 0000 2020 51"


class ConfirmingMtan:
    """identity's answer: every mTAN confirmed just now for the change it is asked about."""

    async def confirmation(
        self, customer_id: str, mtan_id: str, reference: str
    ) -> MtanConfirmation | None:
        return MtanConfirmation(customer_id, BANK_DETAILS_MTAN_PURPOSE, reference, True, NOW)


class Bench:
    def __init__(self, mtan: object | None = None, catalogue: Catalogue | None = None) -> None:
        self.uow = InMemoryContractsUnitOfWork()
        self.tx: Transactions[InMemoryContractsUnitOfWork] = memory_transactions(self.uow)
        self.contracts = Contracts(
            catalogue or Catalogue.default(),
            mtan or ConfirmingMtan(),  # type: ignore[arg-type]
            FixedClock(NOW),
        )

    def events(self, policy_id: str) -> list[object]:
        return list(self.uow.events.streams.get(policy_id, []))  # type: ignore[attr-defined]

    async def activate(self, *customers: str) -> None:
        activations = [
            identity.AccountActivated(
                event_id=uuid.uuid4(),
                aggregate_id=c,
                aggregate_version=2,
                occurred_at=T0,
                customer_ids=(c,),
                customer_id=c,
            )
            for c in customers
        ]
        await self.tx.execute(self.contracts.record_activations, activations)


def move(customer: str, policy: str, key: str, street: str = "Neue Str. 1") -> ReportMove:
    address = PostalAddress(
        recipient=customer, street=street, postal_code="10115", city="Berlin", country="DE"
    )
    return ReportMove(customer, policy, address, date(2026, 6, 1), key)


# --------------------------------------------------------------------------- CT-1


async def test_ct1_an_upstream_message_is_recorded_once_and_its_replay_answers_the_same_ids(
    upstream: Any,
) -> None:
    bench = Bench()
    message = upstream.issued("AS-1")
    first = await bench.tx.execute(bench.contracts.ingest, message)
    again = await bench.tx.execute(bench.contracts.ingest, message)
    assert (first.replayed, first.duplicate, len(first.event_ids)) == (False, False, 1)
    assert (again.replayed, again.event_ids) == (True, first.event_ids)
    assert len(bench.events("AS-1")) == 1


async def test_ct1_one_rule_a_payment_reusing_a_message_id_of_policy_admin_is_recorded(
    upstream: Any,
) -> None:
    """Issue 7 item 3: duplicates are (source system, message id), never the id alone."""
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1", message_id="M"))
    paid = await bench.tx.execute(bench.contracts.ingest, upstream.paid("AS-1", message_id="M"))
    assert not paid.duplicate
    assert [type(e).__name__ for e in bench.events("AS-1")] == ["PolicyIssued", "PremiumPaid"]


async def test_ct1_a_message_id_reused_for_a_different_message_is_refused(
    upstream: Any,
) -> None:
    """Issue 7 item 4: collections pays on P1 with M, then another payment on P2 with M."""
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("P1"))
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("P2"))
    await bench.tx.execute(bench.contracts.ingest, upstream.paid("P1", message_id="M"))
    with pytest.raises(UpstreamRejected) as refused:
        await bench.tx.execute(
            bench.contracts.ingest, upstream.paid("P2", payment_id="pay-2", message_id="M")
        )
    assert refused.value.code is ReasonCode.MESSAGE_ID_REUSED
    assert "message id already used for a different message" in refused.value.detail
    assert [type(e).__name__ for e in bench.events("P2")] == ["PolicyIssued"]


async def test_ct1_an_event_id_stored_without_its_request_record_is_still_a_refusal(
    upstream: Any,
) -> None:
    """Events recorded before request records existed: the event store's DuplicateEvent
    is the same refusal, never an error."""
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("P1"))
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("P2"))
    await bench.tx.execute(bench.contracts.ingest, upstream.paid("P1", message_id="M"))
    bench.uow.requests.records.clear()
    with pytest.raises(UpstreamRejected) as refused:
        await bench.tx.execute(bench.contracts.ingest, upstream.paid("P2", message_id="M"))
    assert refused.value.code is ReasonCode.MESSAGE_ID_REUSED


async def test_ct1_a_refused_message_is_not_remembered_and_applies_once_it_can(
    upstream: Any,
) -> None:
    bench = Bench()
    payment = upstream.paid("AS-9")
    with pytest.raises(UpstreamRejected) as refused:
        await bench.tx.execute(bench.contracts.ingest, payment)
    assert refused.value.code is ReasonCode.POLICY_NOT_FOUND
    assert bench.uow.requests.records == {}
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-9"))
    recorded = await bench.tx.execute(bench.contracts.ingest, payment)
    assert len(recorded.event_ids) == 1


async def test_ct1_a_message_without_a_new_effect_is_a_duplicate_and_remembered(
    upstream: Any,
) -> None:
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1", holders=("anna",)))
    same = await bench.tx.execute(
        bench.contracts.ingest, upstream.holders_changed("AS-1", holders=("anna",))
    )
    assert (same.duplicate, same.replayed, same.event_ids) == (True, False, ())


async def test_ct1_a_fetched_batch_has_the_effects_of_its_messages_one_after_another(
    upstream: Any,
) -> None:
    """The stream's intake takes a batch at once (`ingest_many`): each message decides on
    the state the earlier ones left, and a repeat within the batch is a replay."""
    issued, first = upstream.issued("P1", message_id="I"), upstream.paid("P1", payment_id="a")
    batch = [
        issued, first, upstream.paid("P1", payment_id="b"), first,
        upstream.paid("P1", payment_id="a"),  # the same payment under another message id
        upstream.issued("P2", message_id="I2"), upstream.paid("P2", payment_id="c"),
    ]  # fmt: skip
    together, one_by_one = Bench(), Bench()
    recorded = await together.tx.execute(together.contracts.ingest_many, batch)
    expected = [await one_by_one.tx.execute(one_by_one.contracts.ingest, m) for m in batch]
    assert recorded == expected
    assert [r.replayed for r in recorded] == [False, False, False, True, False, False, False]
    assert [r.duplicate for r in recorded] == [False, False, False, True, True, False, False]
    for policy in ("P1", "P2"):
        assert together.events(policy) == one_by_one.events(policy)
    assert together.uow.requests.records == one_by_one.uow.requests.records
    assert together.uow.policies.customer_policies == one_by_one.uow.policies.customer_policies


async def test_ct1_a_message_id_reused_within_a_batch_refuses_the_batch(upstream: Any) -> None:
    """As one message after another would: the second use of M with another body is
    refused (the stream then applies the batch message by message, dead-lettering it)."""
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("P1"))
    batch = [
        upstream.paid("P1", message_id="M"),
        upstream.paid("P1", payment_id="pay-2", message_id="M"),
    ]
    with pytest.raises(UpstreamRejected) as refused:
        await bench.tx.execute(bench.contracts.ingest_many, batch)
    assert refused.value.code is ReasonCode.MESSAGE_ID_REUSED
    assert [type(e).__name__ for e in bench.events("P1")] == ["PolicyIssued"]


async def test_ct1_a_batch_with_an_event_id_stored_without_its_record_is_still_refused(
    upstream: Any,
) -> None:
    bench = Bench()
    for message in (
        upstream.issued("P1"),
        upstream.issued("P2"),
        upstream.paid("P1", message_id="M"),
    ):
        await bench.tx.execute(bench.contracts.ingest, message)
    bench.uow.requests.records.clear()
    batch = [upstream.paid("P2", payment_id="pay-9"), upstream.paid("P2", message_id="M")]
    with pytest.raises(UpstreamRejected) as refused:
        await bench.tx.execute(bench.contracts.ingest_many, batch)
    assert refused.value.code is ReasonCode.MESSAGE_ID_REUSED
    assert [type(e).__name__ for e in bench.events("P2")] == ["PolicyIssued"]


# --------------------------------------------------------------------------- CT-3, ID-3


async def test_id3_ct3_contracts_are_shown_only_after_activation(upstream: Any) -> None:
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1", holders=("anna",)))
    assert await bench.tx.execute(bench.contracts.my_contracts, "anna") == []
    await bench.activate("anna")
    await bench.activate("anna")
    mine = await bench.tx.execute(bench.contracts.my_contracts, "anna")
    assert [c.policy_number for c in mine] == ["AS-1"]


async def test_ct3_a_stranger_learns_nothing_about_a_contract(upstream: Any) -> None:
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1", holders=("anna",)))
    await bench.activate("anna", "emil")
    details = await bench.tx.execute(bench.contracts.contract, ContractOf("anna", "AS-1"))
    assert details.summary.policy_number == "AS-1"
    with pytest.raises(ContractNotVisible):
        await bench.tx.execute(bench.contracts.contract, ContractOf("emil", "AS-1"))
    why = await bench.tx.execute(bench.contracts.why_not_visible, WhyNotVisible("emil", "AS-1"))
    assert why is NotVisibleReason.NOT_YET_ISSUED
    assert (
        await bench.tx.execute(bench.contracts.why_not_visible, WhyNotVisible("anna", "as-1"))
        is None
    )


# --------------------------------------------------------------------------- CT-4


async def test_ct4_one_idempotency_key_for_moves_on_two_of_ones_contracts_records_both(
    upstream: Any,
) -> None:
    """Issue 7 item 8: keys are scoped by customer and policy."""
    bench = Bench()
    for number in ("AS-1", "AS-2"):
        await bench.tx.execute(bench.contracts.ingest, upstream.issued(number, holders=("anna",)))
    await bench.activate("anna")
    first = await bench.tx.execute(bench.contracts.report_move, move("anna", "AS-1", "key-0001"))
    second = await bench.tx.execute(bench.contracts.report_move, move("anna", "AS-2", "key-0001"))
    assert len(first.event_ids) == len(second.event_ids) == 1
    assert first.event_ids != second.event_ids
    assert isinstance(bench.events("AS-2")[-1], MoveReported)


async def test_ct4_a_retried_move_is_replayed_and_a_reused_key_with_another_body_refused(
    upstream: Any,
) -> None:
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1", holders=("anna",)))
    await bench.activate("anna")
    first = await bench.tx.execute(bench.contracts.report_move, move("anna", "AS-1", "key-0001"))
    retry = await bench.tx.execute(bench.contracts.report_move, move("anna", "AS-1", "key-0001"))
    assert (retry.replayed, retry.event_ids) == (True, first.event_ids)
    with pytest.raises(CommandRejected) as refused:
        await bench.tx.execute(
            bench.contracts.report_move, move("anna", "AS-1", "key-0001", street="Andere 2")
        )
    assert refused.value.code is ReasonCode.IDEMPOTENCY_KEY_REUSED
    assert len([e for e in bench.events("AS-1") if isinstance(e, MoveReported)]) == 1


async def test_ct4_a_stranger_cannot_report_a_move_and_leaves_no_key_behind(
    upstream: Any,
) -> None:
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1", holders=("anna",)))
    await bench.activate("anna", "emil")
    with pytest.raises(ContractNotVisible):
        await bench.tx.execute(bench.contracts.report_move, move("emil", "AS-1", "key-0001"))
    assert len(bench.uow.requests.records) == 1  # only the upstream message


async def test_id6_ct4_bank_details_by_mtan_id_scoped_by_policy_and_refused_for_another_iban(
    upstream: Any,
) -> None:
    bench = Bench()
    for number in ("AS-1", "AS-2"):
        await bench.tx.execute(bench.contracts.ingest, upstream.issued(number, holders=("anna",)))
    await bench.activate("anna")
    first = await bench.tx.execute(
        bench.contracts.change_bank_details, ChangeBankDetails("anna", "AS-1", IBAN, "mtan-1")
    )
    other_policy = await bench.tx.execute(
        bench.contracts.change_bank_details, ChangeBankDetails("anna", "AS-2", IBAN, "mtan-1")
    )
    retry = await bench.tx.execute(
        bench.contracts.change_bank_details, ChangeBankDetails("anna", "AS-1", IBAN, "mtan-1")
    )
    assert first.event_ids != other_policy.event_ids
    assert (retry.replayed, retry.event_ids) == (True, first.event_ids)
    with pytest.raises(CommandRejected) as refused:
        await bench.tx.execute(
            bench.contracts.change_bank_details,
            ChangeBankDetails("anna", "AS-1", OTHER_IBAN, "mtan-1"),
        )
    assert refused.value.code is ReasonCode.IDEMPOTENCY_KEY_REUSED
    changed = bench.events("AS-1")[-1]
    assert isinstance(changed, BankDetailsChanged)
    assert changed.iban_masked == parse_iban(IBAN).masked


async def test_id6_without_an_mtan_service_no_bank_details_change(upstream: Any) -> None:
    class NoMtan:
        async def confirmation(self, *args: str) -> MtanConfirmation | None:
            return None

    bench = Bench(mtan=NoMtan())
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1", holders=("anna",)))
    await bench.activate("anna")
    with pytest.raises(CommandRejected) as refused:
        await bench.tx.execute(
            bench.contracts.change_bank_details, ChangeBankDetails("anna", "AS-1", IBAN, "m-1")
        )
    assert refused.value.code is ReasonCode.MTAN_REQUIRED
    assert bank_details_mtan_reference("AS-1", parse_iban(IBAN)).startswith("AS-1:")


# --------------------------------------------------------------------------- CT-5


async def test_ct5_a_payment_carries_the_configured_point_relevance(upstream: Any) -> None:
    bench = Bench(catalogue=Catalogue.from_config({"liability": False}))
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1"))
    await bench.tx.execute(bench.contracts.ingest, upstream.paid("AS-1"))
    paid = bench.events("AS-1")[-1]
    assert isinstance(paid, PremiumPaid)
    assert paid.point_relevant is False
    assert datetime(2026, 1, 1, tzinfo=UTC) < NOW


# --------------------------------------------------------------------------- ID-3 holder details

HOLDER_ADDRESS = PostalAddress(
    recipient="Anna Beispiel", street="Lindenallee 5", postal_code="50667", city="Köln"
)


def details(customer_id: str, given: str = "Anna") -> PolicyholderDetails:
    return PolicyholderDetails(
        customer_id=customer_id, given_name=given, family_name="Beispiel",
        birth_date=date(1975, 2, 3), postal_address=HOLDER_ADDRESS,
    )  # fmt: skip


async def test_id3_policy_issued_carries_the_holders_details_from_upstream(upstream: Any) -> None:
    bench = Bench()
    message = upstream.issued("AS-1", holders=("cust-anna",)).model_copy(
        update={"policyholders": (details("cust-anna"),)}
    )
    await bench.tx.execute(bench.contracts.ingest, message)
    (issued,) = bench.events("AS-1")
    assert isinstance(issued, PolicyIssued)
    assert issued.policyholders == (details("cust-anna"),)


async def test_id3_without_details_the_event_has_none_as_before(upstream: Any) -> None:
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1"))
    (issued,) = bench.events("AS-1")
    assert isinstance(issued, PolicyIssued)
    assert issued.policyholders == ()


@pytest.mark.parametrize(
    "entries",
    [
        ("cust-bob",),  # a person who is not a holder
        ("cust-anna", "cust-anna"),  # one holder twice
        ("cust-anna",),  # one of two holders missing
    ],
)
async def test_id3_details_must_describe_exactly_the_policyholders(
    upstream: Any, entries: tuple[str, ...]
) -> None:
    bench = Bench()
    message = upstream.issued("AS-1", holders=("cust-anna", "cust-carl")).model_copy(
        update={"policyholders": tuple(details(e) for e in entries)}
    )
    with pytest.raises(UpstreamRejected) as refused:
        await bench.tx.execute(bench.contracts.ingest, message)
    assert refused.value.code is ReasonCode.INVALID_CUSTOMER_IDS
    assert "Anna" not in refused.value.detail  # personal data never in a refusal
    assert bench.events("AS-1") == []


async def test_id3_policyholders_changed_carries_the_new_holders_details(upstream: Any) -> None:
    bench = Bench()
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1"))
    change = upstream.holders_changed("AS-1", holders=("cust-bob",)).model_copy(
        update={"policyholders": (details("cust-bob", "Bob"),)}
    )
    await bench.tx.execute(bench.contracts.ingest, change)
    changed = bench.events("AS-1")[-1]
    assert isinstance(changed, PolicyholdersChanged)
    assert changed.policyholders == (details("cust-bob", "Bob"),)


def test_ct1_a_message_without_details_keeps_the_fingerprint_it_was_recorded_with(
    upstream: Any,
) -> None:
    """Recorded before the optional field existed, redelivered after: still the same."""
    message = upstream.issued("AS-1", message_id="M-1")
    before = message.model_dump(mode="json")
    del before["policyholders"]
    canonical = json.dumps({"type": message.type_name(), **before}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)  # fmt: skip
    assert upstream_fingerprint(message) == hashlib.sha256(canonical.encode()).hexdigest()
    with_details = message.model_copy(update={"policyholders": (details("cust-anna"),)})
    assert upstream_fingerprint(with_details) != upstream_fingerprint(message)
