"""Fakes of the console's adapters for unit tests, and operator/customer tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jwt
from aiokafka import ConsumerRecord
from console.adapters.audit import MemoryAudit
from console.adapters.kafka import DeadLetterView, HistoryEntry, Lag, ReplayRefused
from console.adapters.services import Health, UpstreamError
from console.auth import OperatorVerifier
from console.handlers import Console
from jwt import PyJWK
from servicekit.auth import StaticKeys, generate_signing_key
from servicekit.clock import SystemClock

PRIVATE, JWKS = generate_signing_key("console-test")


def token(audience: str, role: str | None, amr: tuple[str, ...] = ("pwd", "otp", "mfa"),
          issuer: str = "portal-identity", subject: str = "op-1") -> str:  # fmt: skip
    claims: dict[str, Any] = {
        "sub": subject, "aud": audience, "iss": issuer, "amr": list(amr),
        "exp": int((datetime.now(UTC) + timedelta(minutes=10)).timestamp()),
        "preferred_username": "anna",
    }  # fmt: skip
    if role:
        claims["role"] = role
    key = PyJWK(PRIVATE)
    return jwt.encode(claims, key.key, algorithm="ES256", headers={"kid": PRIVATE["kid"]})


def operator_token() -> str:
    return token("portal-operators", "operator")


def customer_token() -> str:
    return token("portal", None, amr=("pwd", "sms", "mfa"), subject="C-1")


def verifier() -> OperatorVerifier:
    return OperatorVerifier(
        StaticKeys(JWKS), SystemClock(), "portal-operators", "portal", "portal-identity"
    )


def record(topic: str, offset: int, headers: list[tuple[str, bytes]], value: bytes,
           key: bytes = b"k", partition: int = 0) -> ConsumerRecord[bytes, bytes]:  # fmt: skip
    return ConsumerRecord(
        topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=len(key),
        serialized_value_size=len(value), headers=headers,
    )  # fmt: skip


def dead_letter(ref: str = "portal.dlq.contracts.upstream-ingestion:0:7") -> DeadLetterView:
    topic, partition, offset = ref.rsplit(":", 2)
    return DeadLetterView(
        topic=topic, partition=int(partition), offset=int(offset), key="K",
        reason="policy_not_found",
        consumer="contracts.upstream-ingestion", original_topic="upstream.contracts.v1",
        original_partition=1, original_offset=3, at="2026-11-27T10:00:00+00:00",
        body_omitted=None, event_type="PremiumPaidUpstream", event_id="m-1", source="/collections",
        event={"message_id": "m-1"}, undecodable=None,
    )  # fmt: skip


@dataclass
class FakeKafka:
    letters: list[DeadLetterView] = field(default_factory=lambda: [dead_letter()])
    replayed: list[str] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)

    async def close(self) -> None:
        return None

    async def lag(self) -> list[Lag]:
        return [Lag("contracts.upstream-ingestion", "upstream.contracts.v1", 0, 5, 9)]

    async def dead_letter_topics(self) -> list[str]:
        return sorted({d.topic for d in self.letters})

    async def event_topics(self) -> list[str]:
        return ["upstream.contracts.v1"]

    async def counts(self, topics: list[str]) -> dict[str, int]:
        return {t: sum(1 for d in self.letters if d.topic == t) or 9 for t in topics}

    async def dead_letters(self, topic: str | None = None) -> list[DeadLetterView]:
        return [d for d in self.letters if topic in (None, d.topic)]

    async def dead_letter(self, ref: str) -> DeadLetterView:
        for d in self.letters:
            if d.ref == ref:
                return d
        raise ReplayRefused(f"no record at {ref}")

    async def replay(self, ref: str) -> DeadLetterView:
        letter = await self.dead_letter(ref)
        self.replayed.append(ref)
        return letter

    async def customer_history(self, customer_id: str) -> list[HistoryEntry]:
        return [e for e in self.history if customer_id in str(e.event)]


@dataclass
class FakeServices:
    jobs: list[tuple[str, date]] = field(default_factory=list)
    notifier_replays: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=lambda: {"loyalty": "http://loyalty"})

    async def health(self) -> list[Health]:
        return [Health("loyalty", "http://loyalty", "up", "0.1.0")]

    async def run_loyalty_job(self, kind: str, business_date: date) -> dict[str, Any]:
        if business_date > date(2026, 12, 31):
            raise UpstreamError(422, "not after the service's business date")
        self.jobs.append((kind, business_date))
        return {"kind": kind, "business_date": business_date.isoformat(), "announced": 3}

    async def notifier_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return [{"message_key": "mk-1", "channel": "email", "status": "dead"}]

    async def notifier_replay(self, message_key: str) -> dict[str, Any]:
        if message_key != "mk-1":
            raise UpstreamError(404, "unknown delivery")
        self.notifier_replays.append(message_key)
        return {"status": "queued"}


@dataclass
class FakePrometheus:
    url: str | None = "http://prometheus"
    asked: list[str] = field(default_factory=list)

    async def query(self, expr: str) -> list[dict[str, Any]]:
        self.asked.append(expr)
        return [{"metric": {"channel": "email", "status": "sent"}, "value": [0, "4"]}]

    async def query_range(self, expr: str, start: float, end: float, step: int
                          ) -> list[dict[str, Any]]:  # fmt: skip
        return [{"metric": {"consumer": "loyalty.ledger"}, "values": [[start, "1"], [end, "2"]]}]


def console(**overrides: Any) -> tuple[Console, FakeKafka, FakeServices, MemoryAudit]:
    kafka, services, audit = FakeKafka(), FakeServices(), MemoryAudit()
    built = Console(kafka=kafka, services=services, prometheus=FakePrometheus(), audit=audit,
                    **overrides)  # type: ignore[arg-type]  # fmt: skip
    return built, kafka, services, audit
