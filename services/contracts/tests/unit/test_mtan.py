"""ID-6/CT-4: the bank details change through identity's mTANs - the handlers with a fake
port on the in-memory unit of work, the HTTP adapter against a mock transport, and the
customer's routes answering 503 (never 500) when identity cannot be asked."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from contracts.adapters.memory import InMemoryContractsUnitOfWork
from contracts.adapters.mtan import IdentityApiSettings, IdentityMtanService
from contracts.domain.catalogue import Catalogue
from contracts.domain.errors import CommandRejected, ReasonCode
from contracts.domain.iban import InvalidIban, parse_iban
from contracts.domain.mtan import (
    BANK_DETAILS_MTAN_PURPOSE,
    MtanChallenge,
    MtanConfirmation,
    MtanRefused,
    MtanUnavailable,
    bank_details_mtan_reference,
)
from contracts.domain.visibility import ContractNotVisible
from contracts.entrypoints.api import register
from contracts.handlers import ChangeBankDetails, Contracts, RequestBankDetailsMtan
from contracts_schemas import identity
from contracts_schemas.contracts import BankDetailsChanged
from servicekit.auth import (
    StaticKeys,
    TokenVerifier,
    basic_authorization,
    generate_signing_key,
    mint_token,
)
from servicekit.clock import FixedClock, SystemClock
from servicekit.http import create_app
from servicekit.memory import memory_transactions

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # conftest's
NOW = T0 + timedelta(days=90)  # business time
IBAN = "DE89 3704 0044 0532 0130 00"
OTHER_IBAN = "DE02 1203 0000 0000 2020 51"
WALL = datetime(2027, 1, 5, 12, 0, tzinfo=UTC)  # identity's time, not the business time
NON_SEPA_IBAN = "BR15 0000 0000 0000 1093 2840 814P2"


class FakeMtan:
    """identity as a port: records what it was asked; confirms what the customer typed."""

    def __init__(self, *, unavailable: bool = False, refused: MtanRefused | None = None) -> None:
        self.unavailable = unavailable
        self.refused = refused
        self.requested: list[tuple[str, str, str]] = []
        self.confirmed: dict[str, tuple[str, str]] = {}  # mtan id -> (customer, reference)
        self.consumed: list[str] = []

    async def request(self, customer_id: str, purpose: str, reference: str) -> MtanChallenge:
        if self.unavailable:
            raise MtanUnavailable("down")
        if self.refused is not None:
            raise self.refused
        self.requested.append((customer_id, purpose, reference))
        mtan_id = f"mtan-{len(self.requested)}"
        return MtanChallenge(mtan_id, purpose, WALL + timedelta(minutes=5))

    def confirm(self, mtan_id: str) -> None:
        customer, _purpose, reference = self.requested[int(mtan_id.split("-")[1]) - 1]
        self.confirmed[mtan_id] = (customer, reference)

    async def confirmation(
        self, customer_id: str, mtan_id: str, reference: str
    ) -> MtanConfirmation | None:
        if self.unavailable:
            raise MtanUnavailable("down")
        found = self.confirmed.get(mtan_id)
        if found is None or found[0] != customer_id:
            return None
        if found[1] == reference:
            self.consumed.append(mtan_id)
        return MtanConfirmation(customer_id, BANK_DETAILS_MTAN_PURPOSE, found[1], True, WALL)


class Bench:
    def __init__(self, port: FakeMtan) -> None:
        self.uow = InMemoryContractsUnitOfWork()
        self.tx = memory_transactions(self.uow)
        # identity confirms on the wall clock; the business clock (NOW) may be far off.
        self.contracts = Contracts(
            Catalogue.default(), port, FixedClock(NOW), FixedClock(WALL + timedelta(minutes=1))
        )

    def events(self, policy_id: str) -> list[object]:
        return list(self.uow.events.streams.get(policy_id, []))


async def bench_with(port: FakeMtan, upstream: Any) -> Bench:
    bench = Bench(port)
    await bench.tx.execute(bench.contracts.ingest, upstream.issued("AS-1", holders=("anna",)))
    activations = [
        identity.AccountActivated(
            event_id=uuid.uuid4(), aggregate_id=c, aggregate_version=2, occurred_at=T0,
            customer_ids=(c,), customer_id=c,
        )
        for c in ("anna", "emil")
    ]  # fmt: skip
    await bench.tx.execute(bench.contracts.record_activations, activations)
    return bench


async def test_id6_ct4_request_confirm_change_on_the_wall_clock(upstream: Any) -> None:
    port = FakeMtan()
    bench = await bench_with(port, upstream)
    sent = await bench.tx.execute(
        bench.contracts.request_bank_details_mtan, RequestBankDetailsMtan("anna", "AS-1", IBAN)
    )
    reference = bank_details_mtan_reference("AS-1", parse_iban(IBAN))
    assert port.requested == [("anna", BANK_DETAILS_MTAN_PURPOSE, reference)]
    assert IBAN.replace(" ", "") not in reference  # a hash, never the IBAN
    port.confirm(sent.mtan_id)
    await bench.tx.execute(
        bench.contracts.change_bank_details, ChangeBankDetails("anna", "AS-1", IBAN, sent.mtan_id)
    )
    assert isinstance(bench.events("AS-1")[-1], BankDetailsChanged)
    assert port.consumed == [sent.mtan_id]


async def test_id6_a_code_bound_to_another_iban_is_refused_and_not_used_up(upstream: Any) -> None:
    port = FakeMtan()
    bench = await bench_with(port, upstream)
    sent = await bench.tx.execute(
        bench.contracts.request_bank_details_mtan, RequestBankDetailsMtan("anna", "AS-1", IBAN)
    )
    port.confirm(sent.mtan_id)
    with pytest.raises(CommandRejected) as refused:
        await bench.tx.execute(
            bench.contracts.change_bank_details,
            ChangeBankDetails("anna", "AS-1", OTHER_IBAN, sent.mtan_id),
        )
    assert refused.value.code is ReasonCode.MTAN_MISMATCH
    assert port.consumed == []
    assert len(bench.events("AS-1")) == 1


@pytest.mark.parametrize(
    ("customer", "iban", "error"),
    [
        ("emil", IBAN, ContractNotVisible),  # not the policyholder: learns nothing
        ("anna", NON_SEPA_IBAN, InvalidIban),  # no change could follow
        ("anna", "DE00 0000 0000 0000 0000 00", InvalidIban),
    ],
)
async def test_id6_no_sms_for_a_change_that_could_not_be_made(
    upstream: Any, customer: str, iban: str, error: type[Exception]
) -> None:
    """SMS cost is an attack surface: nothing is sent unless the change may follow."""
    port = FakeMtan()
    bench = await bench_with(port, upstream)
    with pytest.raises(error):
        await bench.tx.execute(
            bench.contracts.request_bank_details_mtan,
            RequestBankDetailsMtan(customer, "AS-1", iban),
        )
    assert port.requested == []


async def test_id6_a_stranger_never_makes_contracts_consume_an_mtan(upstream: Any) -> None:
    port = FakeMtan()
    bench = await bench_with(port, upstream)
    sent = await bench.tx.execute(
        bench.contracts.request_bank_details_mtan, RequestBankDetailsMtan("anna", "AS-1", IBAN)
    )
    port.confirm(sent.mtan_id)
    with pytest.raises(ContractNotVisible):
        await bench.tx.execute(
            bench.contracts.change_bank_details,
            ChangeBankDetails("emil", "AS-1", IBAN, sent.mtan_id),
        )
    assert port.consumed == []


async def test_id6_identity_down_changes_nothing_and_records_no_key(upstream: Any) -> None:
    port = FakeMtan(unavailable=True)
    bench = await bench_with(port, upstream)
    with pytest.raises(MtanUnavailable):
        await bench.tx.execute(
            bench.contracts.change_bank_details, ChangeBankDetails("anna", "AS-1", IBAN, "m-1")
        )
    assert len(bench.events("AS-1")) == 1
    assert len(bench.uow.requests.records) == 1  # only the upstream message


# --------------------------------------------------------------------------- HTTP adapter


def adapter(handler: Any) -> IdentityMtanService:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    settings = IdentityApiSettings("http://identity:8004/", "contracts", "ct-secret", 1.0)
    return IdentityMtanService(http, settings)


def problem(status: int, reason: str | None, detail: str = "Text") -> httpx.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": "t", "status": status, "detail": detail}
    if reason:
        body["reason"] = reason
    return httpx.Response(status, json=body)


async def test_id6_adapter_requests_with_contracts_own_credentials() -> None:
    seen: list[httpx.Request] = []

    def identity(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={
            "status": "mtan_sent", "mtan_id": "m-7", "purpose": "bank_details_change",
            "expires_at": "2027-01-05T12:05:00+00:00",
        })  # fmt: skip

    sent = await adapter(identity).request("anna", "bank_details_change", "AS-1:abc")
    assert sent == MtanChallenge("m-7", "bank_details_change", WALL + timedelta(minutes=5))
    assert str(seen[0].url) == "http://identity:8004/internal/identity/mtans"
    assert seen[0].headers["Authorization"] == basic_authorization("contracts", "ct-secret")
    assert json.loads(seen[0].content) == {
        "customer_id": "anna", "purpose": "bank_details_change", "reference": "AS-1:abc",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("status", "reason"),
    [(403, "second_factor_required"), (423, "factor_locked"), (429, "sms_rate_limited")],
)
async def test_id6_adapter_passes_on_refusals_about_the_customer(status: int, reason: str) -> None:
    service = adapter(lambda request: problem(status, reason, "Bitte 2FA einschalten."))
    with pytest.raises(MtanRefused) as refused:
        await service.request("anna", "bank_details_change", "AS-1:abc")
    assert (refused.value.status, refused.value.reason) == (status, reason)
    assert refused.value.detail == "Bitte 2FA einschalten."


def _raise(error: Exception) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


@pytest.mark.parametrize(
    "identity",
    [
        lambda request: problem(401, None),  # our credentials are wrong
        lambda request: problem(403, None),  # identity does not grant us `mtan`
        lambda request: problem(500, None),
        lambda request: httpx.Response(502, text="bad gateway"),
        lambda request: httpx.Response(200, text="not json"),
        _raise(httpx.ConnectError("refused")),
        _raise(httpx.ReadTimeout("slow")),
    ],
)
async def test_id6_adapter_identity_failures_are_unavailable(identity: Any) -> None:
    service = adapter(identity)
    with pytest.raises(MtanUnavailable):
        await service.request("anna", "bank_details_change", "AS-1:abc")
    with pytest.raises(MtanUnavailable):
        await service.confirmation("anna", "m-7", "AS-1:abc")


async def test_id6_adapter_unknown_mtan_is_no_confirmation() -> None:
    service = adapter(lambda request: problem(404, "not_found"))
    assert await service.confirmation("anna", "m-7", "AS-1:abc") is None


async def test_id6_adapter_keeps_nothing_a_retry_asks_identity_again() -> None:
    """Any instance may take the retry (issue 13): identity answers it, not this process."""
    calls: list[str] = []

    def identity(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"status": "mtan", "customer_id": "anna",
            "purpose": "bank_details_change", "reference": "AS-1:abc", "confirmed": True,
            "confirmed_at": "2027-01-05T11:59:00+00:00"})  # fmt: skip

    first = await adapter(identity).confirmation("anna", "m-7", "AS-1:abc")
    again = await adapter(identity).confirmation("anna", "m-7", "AS-1:abc")
    assert first == again
    assert first is not None
    assert first.confirmed
    assert calls == ["/internal/identity/mtans/m-7/consume"] * 2


# --------------------------------------------------------------------------- routes


@pytest.mark.parametrize("down", [True, False])
async def test_id6_ct4_bank_details_routes_answer_503_when_identity_is_down(
    upstream: Any, down: bool
) -> None:
    port = FakeMtan(unavailable=down, refused=MtanRefused(403, "second_factor_required", "2FA"))
    bench = await bench_with(port, upstream)
    private, jwks = generate_signing_key("unit")
    app = create_app("contracts")
    app.state.service = SimpleNamespace(contracts=bench.contracts, transactions=bench.tx)
    app.state.token_verifier = TokenVerifier(StaticKeys(jwks), SystemClock(), "portal")
    register(app)
    token = mint_token(private, "anna", "portal", datetime.now(UTC) + timedelta(minutes=5))
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://contracts"
    ) as http:
        asked = await http.post(
            "/contracts/AS-1/bank-details/mtan", json={"iban": IBAN}, headers=bearer
        )
        change = await http.put(
            "/contracts/AS-1/bank-details", json={"iban": IBAN, "mtan_id": "m-1"}, headers=bearer
        )
    assert asked.headers["content-type"] == "application/problem+json"
    if down:
        assert (asked.status_code, change.status_code) == (503, 503)
        assert asked.json()["type"] == "urn:portal:problem:mtan-unavailable"
    else:
        assert asked.status_code == 403
        assert asked.json()["reason"] == "second_factor_required"
        assert change.status_code == 403  # nothing confirmed: mtan_required
