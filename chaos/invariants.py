"""The end conditions of a run and the invariants of issue 13, checked against the
`Ledger` of what was accepted and the services' own stores.

End conditions (waited for exactly, then checked): every service's outbox has no
unpublished row, every consumer group of the run has lag 0 on every partition, and the
notifier has nothing queued, sending or failed (a failed delivery waits for its retry).

Invariants (each a row of the table, `ok` or not):
- UPS-1 every upstream message accepted (policy, payment, cancellation; Kafka ack or 2xx)
  is recorded by contracts exactly once;
- LOY-2 every payment is a fact of each enrolled holder's ledger exactly once;
- CL-4 every accepted claim status change is announced (ClaimStatusChanged) exactly once;
- CL-5 each announcement is notified once on the chosen channel (a delivery `sent`, one
  mail with its Message-ID); a second mail of a key whose log shows `outcome_unknown` is
  the documented crash window (counted apart, not a failure);
- LOY-6 every redemption id is redeemed at most once (and once when it was accepted);
- HTTP no accepted write lost: registrations, activations, enrolments, claims, mailbox
  documents, the last e-mail-instead-of-letter choice;
- HTTP no 5xx outside a window in which an instance behind the route was down, and
  every 5xx a problem document.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from servicekit.kafka import servers
from servicekit.lag import LagMonitor

from chaos.fleet import BACKENDS, LETTERS, Fleet
from chaos.load import Ledger

GRACE = 3.0  # seconds around a down window in which a 5xx is still the fault's


@dataclass
class Check:
    rule: str
    what: str
    expected: int
    found: int
    lost: int = 0
    doubled: int = 0
    detail: str = ""
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0 and self.found == self.expected


# ------------------------------------------------------------------ end conditions


async def end_conditions(fleet: Fleet, dsn: str, bootstrap: str) -> dict[str, int]:
    """What is still under way: unpublished outbox rows per service, lag per group,
    notifier deliveries not yet final. All zero: the run has ended."""
    left: dict[str, int] = {}
    conn = await asyncpg.connect(dsn)
    try:
        for service in BACKENDS:
            schema = fleet.schema(service)
            left[f"outbox {service}"] = int(await conn.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"  # noqa: S608
            ))  # fmt: skip
        left["notifier queued/sending/failed"] = int(await conn.fetchval(
            f"SELECT count(*) FROM {fleet.schema('notifier')}.deliveries"  # noqa: S608
            " WHERE status IN ('queued', 'sending', 'failed')"
        ))  # fmt: skip
    finally:
        await conn.close()
    for group, lag in (await group_lags(fleet.prefix, bootstrap)).items():
        left[f"lag {group}"] = lag
    return left


async def group_lags(prefix: str, bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(bootstrap), client_id="chaos-lag")
    await admin.start()
    try:
        groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(prefix)]
        topics: dict[str, list[str]] = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            topics[group] = sorted({tp.topic for tp in committed})
    finally:
        await admin.close()
    monitor = LagMonitor(bootstrap, {g: t for g, t in topics.items() if t}, "chaos-lag")
    try:
        lags = await monitor.measure()
    finally:
        await monitor.close()
    return {group: sum(parts.values()) for group, parts in lags.items()}


async def wait_until_ended(fleet: Fleet, dsn: str, bootstrap: str, within: float) -> float:
    """Seconds until every end condition held (raises with what is left otherwise)."""
    began = time.monotonic()
    left: dict[str, int] = {}
    while time.monotonic() - began < within:
        try:
            left = await end_conditions(fleet, dsn, bootstrap)
        except (KafkaError, OSError, asyncpg.PostgresError) as exc:
            left = {repr(exc): 1}
        if not any(left.values()):
            return time.monotonic() - began
        await asyncio.sleep(1.0)
    raise TimeoutError(f"not quiet within {within}s: { {k: v for k, v in left.items() if v} }")


# ------------------------------------------------------------------ invariants


class Stores:
    def __init__(self, conn: asyncpg.Connection, fleet: Fleet) -> None:
        self.conn = conn
        self.fleet = fleet

    async def counts(self, service: str, sql: str, *args: Any) -> dict[str, int]:
        """`sql` selects (key, count) rows; {schema} is the service's schema."""
        rows = await self.conn.fetch(sql.replace("{schema}", self.fleet.schema(service)), *args)
        return {str(r[0]): int(r[1]) for r in rows}


def _exactly_once(rule: str, what: str, expected: list[str], found: dict[str, int]) -> Check:
    lost = [k for k in expected if found.get(k, 0) == 0]
    doubled = [k for k in expected if found.get(k, 0) > 1]
    return Check(rule, what, len(expected), sum(1 for k in expected if found.get(k, 0) == 1),
                 lost=len(lost), doubled=len(doubled), examples=(lost + doubled)[:3])  # fmt: skip


async def check_all(fleet: Fleet, dsn: str, ledger: Ledger, mails: list[EmailMessage],
                    windows: list[Any]) -> list[Check]:  # fmt: skip
    conn = await asyncpg.connect(dsn)
    try:
        stores = Stores(conn, fleet)
        checks = [
            *await _upstream(stores, ledger),
            await _points(stores, ledger),
            *await _claims(stores, ledger, mails),
            await _redemptions(stores, ledger),
            *await _writes(stores, ledger),
        ]
    finally:
        await conn.close()
    checks.append(_five_hundreds(ledger, windows))
    return checks


async def _upstream(stores: Stores, ledger: Ledger) -> list[Check]:
    issued = await stores.counts("contracts", """
        SELECT payload->>'policy_number', count(*) FROM {schema}.events
        WHERE event_type LIKE '%.PolicyIssued.%' AND payload->>'policy_number' = ANY($1)
        GROUP BY 1""", list(ledger.policies))  # fmt: skip
    paid = await stores.counts("contracts", """
        SELECT payload->>'payment_id', count(*) FROM {schema}.events
        WHERE event_type LIKE '%.PremiumPaid.%' AND payload->>'payment_id' = ANY($1)
        GROUP BY 1""", list(ledger.payments))  # fmt: skip
    cancelled = await stores.counts("contracts", """
        SELECT i.payload->>'policy_number', count(c.*) FROM {schema}.events i
        JOIN {schema}.events c ON c.payload->>'policy_id' = i.payload->>'policy_id'
             AND c.event_type LIKE '%.PolicyCancelled.%'
        WHERE i.event_type LIKE '%.PolicyIssued.%' AND i.payload->>'policy_number' = ANY($1)
        GROUP BY 1""", list(ledger.cancellations))  # fmt: skip
    return [
        _exactly_once("UPS-1", "policies issued recorded once", list(ledger.policies), issued),
        _exactly_once("UPS-1", "payments recorded once", list(ledger.payments), paid),
        _exactly_once(
            "UPS-1", "cancellations recorded once", list(ledger.cancellations), cancelled
        ),
    ]


async def _points(stores: Stores, ledger: Ledger) -> Check:
    """Each payment is a fact in each enrolled holder's ledger once (the points of the
    monthly run are folded from these facts: once each)."""
    wanted = [(pid, holder) for pid, (_, holder) in ledger.payments.items()
              if holder in ledger.enrolled]  # fmt: skip
    # facts.payload is text (loyalty's migration 0003): read as jsonb here.
    found = await stores.counts("loyalty", """
        SELECT payload::jsonb->>'payment_id' || '/' || customer_id, count(*) FROM {schema}.facts
        WHERE payload::jsonb->>'payment_id' = ANY($1) GROUP BY 1""",
        [p for p, _ in wanted])  # fmt: skip
    return _exactly_once("LOY-2", "payments in each enrolled holder's ledger once",
                         [f"{p}/{h}" for p, h in wanted], found)  # fmt: skip


async def _claims(stores: Stores, ledger: Ledger, mails: list[EmailMessage]) -> list[Check]:
    changes = await stores.conn.fetch(f"""
        SELECT event_id::text, payload->>'claim_number' AS number, payload->>'new_status' AS status
        FROM {stores.fleet.schema('claims')}.events
        WHERE event_type LIKE '%.ClaimStatusChanged.%' AND payload->>'claim_number' = ANY($1)
        """, [number for number, _ in ledger.claims.values()])  # noqa: S608  # fmt: skip
    announced = Counter(f"{r['number']}/{r['status']}" for r in changes)
    expected = [f"{number}/{status}" for number, status in ledger.transitions.values()]
    announce = _exactly_once("CL-4", "status changes announced once", expected, dict(announced))
    notifier = stores.fleet.schema("notifier")
    deliveries = await stores.conn.fetch(f"""
        SELECT d.event_id::text, d.message_key, d.status,
               EXISTS (SELECT 1 FROM {notifier}.delivery_log l WHERE l.message_key = d.message_key
                       AND l.detail LIKE '%outcome_unknown%') AS crashed
        FROM {notifier}.deliveries d WHERE d.channel = 'email' AND d.event_id::text = ANY($1)
        """, [r["event_id"] for r in changes])  # noqa: S608  # fmt: skip
    by_event = Counter(str(d["event_id"]) for d in deliveries)
    sent_mails = Counter(str(m["Message-ID"]).strip("<>").split("@")[0] for m in mails)
    unplanned = sum(1 for r in changes if by_event[r["event_id"]] == 0)
    unreceived = sum(
        1 for d in deliveries if d["status"] == "sent" and sent_mails[d["message_key"]] == 0
    )
    lost = unplanned + sum(
        1 for d in deliveries if d["status"] != "sent" or sent_mails[d["message_key"]] == 0
    )
    twice = [d for d in deliveries if sent_mails[d["message_key"]] > 1]
    window = [d for d in twice if d["crashed"]]
    doubled = len(twice) - len(window) + sum(1 for n in by_event.values() if n > 1)
    notified = Check(
        "CL-5", "announcements e-mailed once (chosen channel)", len(changes),
        sum(1 for d in deliveries if d["status"] == "sent" and sent_mails[d["message_key"]] >= 1),
        lost=lost, doubled=doubled,
        detail=f"{len(window)} twice in the documented crash window (reported, not failed)"
        + (f"; {unplanned} without a delivery" if unplanned else "")
        + (f"; {unreceived} sent, not in the sink" if unreceived else "")
        + _unsent(deliveries),
    )  # fmt: skip
    return [announce, notified]


def _unsent(deliveries: list[asyncpg.Record]) -> str:
    """The statuses of the deliveries not sent, for the report (empty when all were)."""
    statuses = Counter(str(d["status"]) for d in deliveries if d["status"] != "sent")
    return "".join(f"; {n} {status}" for status, n in sorted(statuses.items()))


async def _redemptions(stores: Stores, ledger: Ledger) -> Check:
    found = await stores.counts("loyalty", """
        SELECT payload->>'redemption_id', count(*) FROM {schema}.events
        WHERE event_type LIKE '%.RewardRedeemed.%' AND payload->>'redemption_id' = ANY($1)
        GROUP BY 1""", list(ledger.redemptions))  # fmt: skip
    return _exactly_once("LOY-6", "accepted redemptions redeemed once", list(ledger.redemptions),
                         found)  # fmt: skip


async def _writes(stores: Stores, ledger: Ledger) -> list[Check]:
    accounts = await stores.counts("identity", """
        SELECT username, count(*) FROM {schema}.accounts WHERE username = ANY($1) GROUP BY 1
        """, list(ledger.registrations))  # fmt: skip
    activated = await stores.counts("identity", """
        SELECT customer_id, count(*) FROM {schema}.accounts WHERE customer_id = ANY($1)
        GROUP BY 1""", list(ledger.activated))  # fmt: skip
    enrolled = await stores.counts("loyalty", """
        SELECT payload->>'customer_id', count(*) FROM {schema}.events
        WHERE event_type LIKE '%.CustomerEnrolled.%' AND payload->>'customer_id' = ANY($1)
        GROUP BY 1""", list(ledger.enrolled))  # fmt: skip
    claims = await stores.counts("claims", """
        SELECT claim_id, count(*) FROM {schema}.claims WHERE claim_id = ANY($1) GROUP BY 1
        """, list(ledger.claims))  # fmt: skip
    documents = await stores.counts("documents", """
        SELECT document_id, count(*) FROM {schema}.documents WHERE document_id = ANY($1)
        GROUP BY 1""", list(ledger.documents))  # fmt: skip
    chosen = await stores.counts("documents", """
        SELECT customer_id || '/' || email_instead_of_letter::text, 1 FROM {schema}.preferences
        WHERE customer_id = ANY($1)""", list(ledger.preference))  # fmt: skip
    return [
        _exactly_once("ID-1", "registrations (202) present", list(ledger.registrations), accounts),
        _exactly_once("ID-3", "activations (200) present", list(ledger.activated), activated),
        _exactly_once("LOY-1", "enrolments (201) present once", list(ledger.enrolled), enrolled),
        _exactly_once("CL-1", "claims reported (201) present", list(ledger.claims), claims),
        _exactly_once(
            "DOC-1", "mailbox documents (201) present", list(ledger.documents), documents
        ),
        _exactly_once(
            "DOC-4",
            "last e-mail-instead-of-letter choice (200) holds",
            [f"{c}/{str(v).lower()}" for c, v in ledger.preference.items()],
            chosen,
        ),
    ]


def _five_hundreds(ledger: Ledger, windows: list[Any]) -> Check:
    """Every 5xx fell in a window in which an instance behind it was down (the instance
    itself, or for a gateway either instance of the upstream - it passes one that refuses
    connections, but a request that one had taken may fail), and is a problem document."""
    errors = [a for a in ledger.answers if a.status >= 500]
    unexcused = []
    for answer in errors:
        behind = {answer.via, *(f"{answer.upstream}-{letter}" for letter in LETTERS)}
        down = any(w.instance in behind and w.covers(answer.at, GRACE) for w in windows)
        if not down or not answer.problem:
            unexcused.append(answer)
    return Check(
        "HTTP", "5xx only while the instance behind was down, as problems", 0, len(unexcused),
        doubled=0, lost=0,
        detail=f"{len(errors)} 5xx in all, {len(errors) - len(unexcused)} inside fault windows",
        examples=[f"{a.via} {a.method} {a.path} {a.status} problem={a.problem}"
                  for a in unexcused[:3]],
    )  # fmt: skip
