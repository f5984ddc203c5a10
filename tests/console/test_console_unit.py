"""OPS-1/OPS-3 on fakes: who may use the console, dead letters and replays recorded,
the customer history with its reason, the loyalty jobs with confirmation, trace lookup,
the pages and the `portal` CLI's help."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from console.adapters.kafka import dead_letter_view, parse_ref, replay_headers
from console.adapters.traces import lookup
from console.auth import NotAnOperator, Operator
from console.bootstrap import Service
from console.config import ConsoleSettings
from console.entrypoints import portal_cli
from console.entrypoints.api import create_app
from console_fakes import (
    FakePrometheus,
    console,
    customer_token,
    operator_token,
    record,
    token,
    verifier,
)
from contracts_schemas.cloudevents import encode
from e2e_factories import premium_paid
from servicekit.auth import Unauthenticated

ANNA = Operator("op-1", "anna")


# ---------------------------------------------------------------------- tokens


async def test_ops1_operator_token_with_second_factor_is_accepted() -> None:
    operator = await verifier().verify(operator_token())
    assert operator == Operator("op-1", "anna")


async def test_ops1_customer_token_is_refused_as_not_an_operator() -> None:
    with pytest.raises(NotAnOperator):
        await verifier().verify(customer_token())


# Minted when the test runs, not when the module is collected: a token made at collection
# would expire before a long run reaches it (seen in CI: Unauthenticated, not NotAnOperator).
@pytest.mark.parametrize(
    "bad",
    [
        lambda: token("portal-operators", "operator", amr=("pwd",)),  # no second factor
        lambda: token("portal-operators", None),  # no role
        lambda: token("portal", "operator"),  # customer audience
    ],
    ids=["no-second-factor", "no-role", "customer-audience"],
)
async def test_ops1_tokens_without_role_factor_or_audience_are_refused(
    bad: Callable[[], str],
) -> None:
    with pytest.raises(NotAnOperator):
        await verifier().verify(bad())


async def test_ops1_forged_or_foreign_tokens_are_unauthenticated() -> None:
    for bad in ("not-a-token", token("elsewhere", "operator"),
                token("portal-operators", "operator", issuer="someone")):  # fmt: skip
        with pytest.raises(Unauthenticated):
            await verifier().verify(bad)


# ---------------------------------------------------------------------- dead letters


def _poison() -> tuple[list[tuple[str, bytes]], bytes]:
    paid = premium_paid("P-1", 1000, datetime(2026, 3, 1, tzinfo=UTC))
    cloud_event = encode(paid, "/collections")
    headers = [*cloud_event.headers(), ("x-dlq-reason", b"policy_not_found: no policy"),
               ("x-dlq-consumer", b"contracts.upstream-ingestion"),
               ("x-dlq-original-topic", b"upstream.contracts.v1"),
               ("x-dlq-original-partition", b"2"), ("x-dlq-original-offset", b"41"),
               ("x-dlq-at", b"2026-11-27T10:00:00+00:00")]  # fmt: skip
    return headers, cloud_event.data


def test_ops1_dead_letter_shows_reason_original_position_and_decoded_event() -> None:
    headers, body = _poison()
    view = dead_letter_view(record("portal.dlq.contracts.upstream-ingestion", 5, headers, body))
    assert view.reason == "policy_not_found: no policy"
    assert (view.original_topic, view.original_partition, view.original_offset) == (
        "upstream.contracts.v1", 2, 41)  # fmt: skip
    assert view.event_type == "de.portal.upstream.PremiumPaidUpstream.v1"
    assert view.event is not None
    assert view.event["policy_number"] == "P-1"
    assert view.undecodable is None
    assert parse_ref(view.ref) == ("portal.dlq.contracts.upstream-ingestion", 0, 5)


def test_ops1_an_undecodable_dead_letter_is_shown_with_why() -> None:
    view = dead_letter_view(record("portal.dlq.x", 1, [("x-dlq-reason", b"garbage")], b"\x00"))
    assert view.undecodable is not None
    assert view.event is None


def test_ops1_replay_strips_every_dead_letter_header() -> None:
    headers, body = _poison()
    kept = replay_headers(record("portal.dlq.x", 1, headers, body))
    assert kept
    assert not [k for k, _ in kept if k.startswith("x-dlq-")]
    assert ("ce_type", b"de.portal.upstream.PremiumPaidUpstream.v1") in kept


async def test_ops1_every_replay_is_recorded_with_who_and_what() -> None:
    ops, kafka, _, audit = console()
    ref = kafka.letters[0].ref
    results = await ops.replay([ref, ref, "portal.dlq.gone:0:1"], ANNA)
    assert [r.ok for r in results] == [True, False]
    assert kafka.replayed == [ref]
    rows = await audit.replays()
    assert {r.dead_letter for r in rows} == {ref, "portal.dlq.gone:0:1"}
    done = next(r for r in rows if r.dead_letter == ref)
    assert done.operator == "anna (op-1)"
    assert done.original_topic == "upstream.contracts.v1"
    assert done.event_id == "m-1"
    listed = await ops.dead_letters()
    assert len(listed[0]["replays"]) == 1


async def test_ops1_notifier_dead_letters_are_replayed_through_its_api_and_recorded() -> None:
    ops, _, services, audit = console()
    letters, error = await ops.notifier_dead_letters()
    assert error is None
    assert letters[0]["message_key"] == "mk-1"
    results = await ops.notifier_replay(["mk-1", "mk-2"], ANNA)
    assert [r.ok for r in results] == [True, False]
    assert services.notifier_replays == ["mk-1"]
    assert [r.kind for r in await audit.replays()] == ["notifier", "notifier"]


# ---------------------------------------------------------------------- support and jobs


async def test_ops1_customer_history_needs_a_reason_and_records_it() -> None:
    ops, _, _, audit = console()
    with pytest.raises(ValueError, match="Anlass"):
        await ops.customer_history("C-1", " ", ANNA)
    await ops.customer_history("C-1", "Beschwerde 4711", ANNA)
    lookups = await audit.lookups()
    assert lookups[0]["reason"] == "Beschwerde 4711"
    assert lookups[0]["operator"] == "anna (op-1)"


async def test_ops3_loyalty_job_runs_for_a_business_date_and_is_recorded() -> None:
    ops, _, services, audit = console()
    result = await ops.run_job("monthly", date(2026, 4, 1), ANNA)
    assert result["announced"] == 3
    assert services.jobs == [("monthly", date(2026, 4, 1))]
    assert audit.job_rows[0]["operator"] == "anna (op-1)"
    with pytest.raises(ValueError, match="unknown job"):
        await ops.run_job("weekly", date(2026, 4, 1), ANNA)


async def test_ops1_overview_gathers_health_lag_dead_letters_and_figures() -> None:
    ops, _, _, _ = console()
    overview = await ops.overview()
    assert overview["services"][0]["status"] == "up"
    assert overview["lag"] == [{"group": "contracts.upstream-ingestion", "lag": 4}]
    assert overview["dead_letters"][0]["count"] == 1
    assert overview["figures"]["notifications"][0]["value"] == 4.0
    assert overview["prometheus"] is True
    series = await ops.series("throughput")
    assert series["traces"][0]["y"] == [1.0, 2.0]


async def test_ops1_points_this_month_query_covers_the_month_so_far() -> None:
    ops, _, _, _ = console()
    await ops.overview()
    prometheus = ops.prometheus
    assert isinstance(prometheus, FakePrometheus)
    points = next(q for q in prometheus.asked if "loyalty_points" in q)
    assert "{month}" not in points


def test_ops1_trace_lookup_by_trace_or_request_id(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    lines = [
        {"trace_id": "aa" * 16, "span_id": "01" * 8, "name": "POST /x", "service": "gateway",
         "start_time": "1", "attributes": {"request_id": "req-1"}},
        {"context": {"trace_id": "0x" + "aa" * 16, "span_id": "0x" + "02" * 8},
         "parent_id": "0x" + "01" * 8, "name": "consume", "start_time": "2",
         "resource": {"attributes": {"service.name": "loyalty"}}},
        {"trace_id": "bb" * 16, "span_id": "03" * 8, "name": "other", "start_time": "0"},
    ]  # fmt: skip
    spans.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    by_request = lookup(spans, "req-1")
    assert [s.service for s in by_request] == ["gateway", "loyalty"]
    assert lookup(spans, "aa" * 16) == by_request
    assert lookup(None, "req-1") == []


# ---------------------------------------------------------------------- HTTP


class _Verifier:
    async def verify(self, raw: str) -> Operator:
        return await verifier().verify(raw)


def _app() -> tuple[httpx.AsyncClient, Any]:
    ops, kafka, _, _ = console()
    settings = ConsoleSettings(services={"identity": "http://identity.invalid"})
    service = Service(settings, ops, verifier(), httpx.AsyncClient(), None)
    app = create_app(service)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://console"), kafka


async def test_ops1_api_401_without_token_403_for_a_customer_200_for_an_operator() -> None:
    client, _ = _app()
    async with client:
        none = await client.get("/console/api/overview")
        assert none.status_code == 401
        assert none.headers["content-type"] == "application/problem+json"
        customer = await client.get(
            "/console/api/overview", headers={"Authorization": f"Bearer {customer_token()}"}
        )
        assert customer.status_code == 403
        assert customer.headers["content-type"] == "application/problem+json"
        operator = await client.get(
            "/console/api/overview", headers={"Authorization": f"Bearer {operator_token()}"}
        )
        assert operator.status_code == 200, operator.text


async def test_ops1_pages_show_login_refusal_or_content() -> None:
    client, kafka = _app()
    async with client:
        login = await client.get("/console/")
        assert login.status_code == 401
        assert 'lang="de"' in login.text
        assert '<label for="otp"' in login.text
        client.cookies.set("portal_console", customer_token(), path="/console")
        refused = await client.get("/console/")
        assert refused.status_code == 403
        client.cookies.set("portal_console", operator_token(), path="/console")
        page = await client.get("/console/dead-letters")
        assert page.status_code == 200
        assert "policy_not_found" in page.text
        unconfirmed = await client.post(
            "/console/dead-letters/replay", data={"ref": kafka.letters[0].ref}
        )
        assert unconfirmed.status_code == 422
        assert kafka.replayed == []
        done = await client.post(
            "/console/dead-letters/replay", data={"ref": kafka.letters[0].ref, "confirm": "yes"}
        )
        assert done.status_code == 200
        assert kafka.replayed == [kafka.letters[0].ref]
        js = await client.get("/console/vendor/plotly.min.js")
        assert js.status_code == 200
        assert "plotly" in js.text[:2000].lower()


async def test_ops1_jobs_need_confirmation() -> None:
    client, _ = _app()
    async with client:
        client.cookies.set("portal_console", operator_token(), path="/console")
        unconfirmed = await client.post(
            "/console/jobs", data={"kind": "monthly", "business_date": "2026-04-01"}
        )
        assert unconfirmed.status_code == 422
        confirmed = await client.post(
            "/console/jobs",
            data={"kind": "monthly", "business_date": "2026-04-01", "confirm": "yes"},
        )
        assert confirmed.status_code == 200
        assert "3 Ereignisse" in confirmed.text


# ---------------------------------------------------------------------- CLI


def _subcommands(parser: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                found += _subcommands(sub, (*path, name))
    return found


def test_ops3_every_portal_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _subcommands(portal_cli.parser())
    assert ("dead-letters", "replay") in commands
    assert ("rebuild",) in commands
    for path in commands:
        with pytest.raises(SystemExit) as done:
            portal_cli.main([*path, "--help"])
        assert done.value.code == 0
        assert "usage: portal" in capsys.readouterr().out


def test_ops3_portal_usage_errors_exit_non_zero() -> None:
    with pytest.raises(SystemExit) as done:
        portal_cli.main(["jobs", "run", "--kind", "weekly", "--date", "2026-04-01"])
    assert done.value.code == 2
