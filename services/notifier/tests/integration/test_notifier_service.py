"""The notifier wired end to end on the real broker and database: events published on
Kafka, e-mail into a real SMTP server, SMS into a real HTTP server standing in for the
provider, letters into a print-queue directory. The notifier runs in-process; the kill
test (test_notifier_killed.py) runs it as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from contracts_schemas.claims import ClaimStatus, ClaimStatusChanged
from contracts_schemas.common import NotificationChannel
from notifier.domain.messages import ChannelKind, message_key, normalize_msisdn
from notifier_harness import Customer, Running, now, operator_headers, running_notifier, until
from notifier_servers import SmtpServer, plain_text, running_sms_provider, running_smtp
from servicekit.clock import BERLIN

pytestmark = pytest.mark.integration


async def test_cl4_claim_status_changed_on_kafka_yields_exactly_one_german_email() -> None:
    async with running_smtp() as smtp, running_notifier(smtp_port=smtp.port) as notifier:
        erika = Customer()
        await notifier.publish(erika.registered())
        await notifier.contact_known(erika.customer_id)
        changed = erika.claim_status("claim-000123", ClaimStatus.APPROVED)
        # The same event delivered three times (a producer retry, a redelivery): NT-4.
        await notifier.publish(changed, changed, changed)

        delivery = await _emailed_once(notifier, smtp, erika, changed)
        (email,) = smtp.handler.messages()
        assert email["Message-ID"] == f"<{delivery['message_key']}@portal.example>"
        assert email["Subject"] == "Neuer Bearbeitungsstand zu Ihrem Vorgang SCH-2026-000123"
        text = plain_text(email)
        assert text.startswith("Guten Tag Erika Mustermann,")
        changed_on = changed.occurred_at.astimezone(BERLIN).strftime("%d.%m.%Y")
        assert f"hat sich am {changed_on} geändert" in text
        assert "Neuer Stand: Leistung bewilligt" in text
        assert "Voraussichtlich abgeschlossen bis: 31.12.2026" in text
        # OPS-1: the delivery log of the message, without its content.
        details = await notifier.delivery(delivery["message_key"])
        assert [e["status"] for e in details["log"]] == ["queued", "sending", "sent"]
        assert details["recipient"] == f"c***@{erika.email.split('@')[1]}"
        assert "Leistung bewilligt" not in json.dumps(details)


async def test_cl5_nt3_a_status_change_read_before_the_registration_is_emailed_after_it() -> None:
    """Identity's topic behind the claims topic: the notice waits in the contact view."""
    async with running_smtp() as smtp, running_notifier(smtp_port=smtp.port) as notifier:
        erika = Customer()
        changed = erika.claim_status("claim-000124", ClaimStatus.APPROVED)
        await notifier.publish(changed)
        await notifier.waiting(erika.customer_id, 1)
        assert await notifier.deliveries(customer_id=erika.customer_id) == []

        await notifier.publish(erika.registered())

        await _emailed_once(notifier, smtp, erika, changed)
        await notifier.waiting(erika.customer_id, 0)


async def _emailed_once(
    notifier: Running, smtp: SmtpServer, customer: Customer, event: ClaimStatusChanged
) -> dict[str, Any]:
    """The customer's one delivery: `event`'s e-mail, sent to their address and received."""
    (delivery,) = await notifier.settled(customer.customer_id)
    await smtp.handler.arrived.wait()
    assert delivery["status"] == "sent"
    assert delivery["message_key"] == customer.email_key(event)
    (envelope,) = smtp.handler.envelopes
    assert envelope.rcpt_tos == [customer.email]
    return delivery


async def test_nt4_sms_provider_failing_twice_then_accepting_yields_one_sms() -> None:
    async with (
        running_sms_provider() as provider,
        running_notifier(sms_base_url=provider.base_url, smtp_port=9) as notifier,
    ):
        provider.fail_then_accept(failures=2, status=503)
        erika = Customer()
        await notifier.publish(
            erika.registered(), erika.channel_chosen("claim-000777", NotificationChannel.SMS)
        )
        await notifier.contact_known(erika.customer_id)
        changed = erika.claim_status("claim-000777", ClaimStatus.PAID)
        await notifier.publish(changed)

        (delivery,) = await notifier.settled(erika.customer_id)

        assert delivery["status"] == "sent"
        assert delivery["channel"] == "sms"
        assert delivery["attempts"] == 3
        (accepted,) = provider.accepted()
        assert [r.status for r in provider.requests] == [503, 503, 202]
        key = message_key(changed.event_id, ChannelKind.SMS, normalize_msisdn(erika.mobile))
        assert {r.json()["client_ref"] for r in provider.requests} == {key}
        assert accepted.json()["to"] == "491512345678"
        assert (
            "Neuer Stand zu Ihrem Vorgang SCH-2026-000777: Zahlung veranlasst"
            in (accepted.json()["text"])
        )
        log = (await notifier.delivery(key))["log"]
        assert [e["status"] for e in log] == [
            "queued", "sending", "failed", "sending", "failed", "sending", "sent",
        ]  # fmt: skip
        # Backoff with full jitter: each retry waits at most base * 2^(n-1) (0.2 s, 0.4 s).
        failed = [e for e in log if e["status"] == "failed"]
        for n, entry in enumerate(failed, start=1):
            planned = datetime.fromisoformat(entry["detail"].rsplit("next attempt at ", 1)[1])
            delay = planned - datetime.fromisoformat(entry["at"])
            assert timedelta(0) <= delay <= timedelta(seconds=0.2 * 2 ** (n - 1))


async def test_nt4_always_failing_provider_dead_letters_and_a_replay_delivers() -> None:
    async with (
        running_sms_provider() as provider,
        running_notifier(sms_base_url=provider.base_url, smtp_port=9, max_attempts=3) as notifier,
    ):
        provider.fail_always(500)
        erika = Customer()
        await notifier.publish(
            erika.registered(), erika.channel_chosen("claim-000888", NotificationChannel.SMS)
        )
        await notifier.contact_known(erika.customer_id)
        await notifier.publish(erika.claim_status("claim-000888"))

        (dead,) = await notifier.settled(erika.customer_id)
        assert dead["status"] == "dead"
        assert dead["attempts"] == 3
        assert dead["last_error"] == "sms http 500: Internal Error"
        assert dead["replayable"] is True
        assert len(provider.requests) == 3
        assert not provider.accepted()

        # Operators see it among the dead letters (and only with service credentials).
        http = notifier.http
        assert (await http.get("/internal/notifier/dead-letters")).status_code == 401
        listed = await http.get(
            "/internal/notifier/dead-letters",
            params={"customer_id": erika.customer_id},
            headers=operator_headers(),
        )
        assert [d["message_key"] for d in listed.json()] == [dead["message_key"]]

        # The provider recovers; a replay later delivers the message once.
        provider.accept_all()
        replayed = await http.post(
            f"/internal/notifier/deliveries/{dead['message_key']}/replay",
            headers=operator_headers(),
        )
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["status"] in {"queued", "sending", "sent"}

        (sent,) = await notifier.settled(erika.customer_id)
        assert sent["status"] == "sent"
        assert sent["replays"] == 1
        assert len(provider.accepted()) == 1
        assert provider.accepted()[0].json()["client_ref"] == dead["message_key"]
        again = await http.post(
            f"/internal/notifier/deliveries/{dead['message_key']}/replay",
            headers=operator_headers(),
        )
        assert again.status_code == 409
        statuses = [e["status"] for e in (await notifier.delivery(dead["message_key"]))["log"]]
        assert statuses[-4:] == ["dead", "queued", "sending", "sent"]


async def test_nt4_nt6_codes_are_never_sent_expired_and_floods_are_cut(tmp_path) -> None:
    """An expired login code is never sent; six codes in a minute to one number: five go
    out, the sixth is dropped (NT-6); the activation letter lands in the print queue."""
    async with (
        running_sms_provider() as provider,
        running_notifier(
            sms_base_url=provider.base_url, smtp_port=9, print_queue_dir=tmp_path
        ) as notifier,
    ):
        erika = Customer()
        expired = erika.login_code("111111", expires_at=now() - timedelta(seconds=1))
        flood = [erika.login_code(f"{n:06d}") for n in range(200000, 200006)]
        letter = erika.activation_code()
        await notifier.publish(expired, *flood, letter)

        found = await notifier.settled(erika.customer_id, count=8)
        by_event = {d["event_id"]: d for d in found}

        assert by_event[str(expired.event_id)]["status"] == "expired"
        assert sorted(by_event[str(e.event_id)]["status"] for e in flood) == [
            *["sent"] * 5,
            "suppressed",
        ]
        sent_codes = [r.json()["text"][:6] for r in provider.accepted()]
        assert len(sent_codes) == 5
        assert "111111" not in sent_codes
        letter_delivery = by_event[str(letter.event_id)]
        assert letter_delivery["status"] == "sent"
        manifest = json.loads((tmp_path / f"{letter_delivery['message_key']}.json").read_text())
        assert manifest["kind"] == "activation_code"
        assert (tmp_path / manifest["file"]).read_bytes().startswith(b"%PDF")
        # Codes do not linger in the message store once they are final.
        async with notifier.service.runtime.pool.acquire() as conn:
            lingering = await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE customer_id = $1"
                " AND (rendered IS NOT NULL OR message->'context' <> '{}')",
                erika.customer_id,
            )
        assert lingering == 0


async def test_nt4_consuming_the_same_event_twice_plans_one_message() -> None:
    """Even past the inbox (a rebuild, a purged inbox), the message key makes the second
    enqueue a no-op: one row, one 'queued' log entry."""
    async with running_smtp() as smtp, running_notifier(smtp_port=smtp.port) as notifier:
        erika = Customer()
        await notifier.publish(erika.registered())
        await notifier.contact_known(erika.customer_id)
        changed = erika.claim_status()
        service = notifier.service
        for _ in range(2):  # straight into the intake, past the inbox
            await service.transactions.run(lambda uow: service.intake.handle([changed], uow))

        (delivery,) = await notifier.settled(erika.customer_id)
        details = await notifier.delivery(delivery["message_key"])
        assert [e["status"] for e in details["log"]].count("queued") == 1
        await until(lambda: _count(smtp.handler.envelopes))
        assert len(smtp.handler.envelopes) == 1


async def _count(items: list[object]) -> int:
    return len(items)


async def test_ops3_operators_list_and_replay_dead_letters_from_the_cli() -> None:
    async with (
        running_sms_provider() as provider,
        running_notifier(sms_base_url=provider.base_url, smtp_port=9, max_attempts=1) as notifier,
    ):
        provider.fail_always(500)
        erika = Customer()
        await notifier.publish(erika.login_code(expires_at=now() + timedelta(minutes=10)))
        (dead,) = await notifier.settled(erika.customer_id)
        assert dead["status"] == "dead"
        provider.accept_all()
        settings = notifier.service.settings
        env = os.environ | {
            "PORTAL_DATABASE_SCHEMA": settings.schema_name,
            "PORTAL_TOPIC_PREFIX": settings.topic_prefix,
            "PORTAL_LOG_LEVEL": "WARNING",
            "COLUMNS": "250",
        }

        listed = await _cli(env, "dead-letters", "--customer", erika.customer_id)
        replayed = await _cli(env, "replay", dead["message_key"])

        assert dead["message_key"] in listed
        assert "sms http 500" in listed
        assert "queued again" in replayed
        (sent,) = await notifier.settled(erika.customer_id)
        assert sent["status"] == "sent"
        assert len(provider.accepted()) == 1


async def _cli(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "notifier"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    return output.decode()
