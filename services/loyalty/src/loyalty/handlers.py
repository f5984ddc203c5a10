"""Use cases of the loyalty service: facts in, decisions taken, ledgers announced.

Balances are never stored as the truth: every statement is `build_ledger` over the
customer's facts (LOY-12/13). The service records its own decisions (enrolment,
redemption) as events on the customer's account stream, which serialises them, and
announces ledger movements once each on its topic for the notifier and dashboards.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime

from contracts_schemas import loyalty as events
from contracts_schemas.base import Event
from servicekit.consumer import Delivery
from servicekit.db import Connection
from servicekit.eventstore import EventStore

from loyalty.adapters import fact_store
from loyalty.domain import facts as f
from loyalty.domain.config import LoyaltyConfig
from loyalty.domain.decisions import (
    EnrolmentRefused,
    RedemptionRefused,
    decide_enrolment,
    decide_redemption,
)
from loyalty.domain.ledger import (
    EntryKind,
    ExpiryReason,
    Ledger,
    MembershipStatus,
    build_ledger,
    expiry_warnings,
)
from loyalty.translation import facts_from

EVENT_NAMESPACE = uuid.UUID("5b0c7c1e-3f5e-4c3e-9a57-6c0a1f1e2d01")


def account_stream(customer_id: str) -> str:
    return f"account-{customer_id}"


def event_uuid(customer_id: str, key: str) -> uuid.UUID:
    """Deterministic: the same decision or ledger entry always has the same event id."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{customer_id}:{key}")


class UnknownReward(LookupError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Loyalty:
    store: EventStore
    config: LoyaltyConfig

    async def record_facts(self, conn: Connection, deliveries: Sequence[Delivery]) -> None:
        """Consumer handler: every fact the batch contributes, stored once per customer."""
        rows = [row for delivery in deliveries for row in facts_from(delivery.message)]
        await fact_store.add_facts(conn, rows)

    async def statement(self, conn: Connection, customer_id: str, as_of: datetime) -> Ledger:
        facts = (await fact_store.facts_of(conn, [customer_id])).get(customer_id, [])
        return build_ledger(customer_id, facts, as_of, self.config)

    async def enrol(
        self, conn: Connection, customer_id: str, now: datetime
    ) -> Ledger | EnrolmentRefused:
        """LOY-1: enrol the customer when identity's data makes them eligible."""
        facts = (await fact_store.facts_of(conn, [customer_id])).get(customer_id, [])
        ledger = build_ledger(customer_id, facts, now, self.config)
        registration = next((x for x in facts if isinstance(x, f.CustomerRegistered)), None)
        decision = decide_enrolment(
            registration,
            already_enrolled=ledger.membership.status is MembershipStatus.ENROLLED,
            account_cancelled=any(isinstance(x, f.AccountCancelled) for x in facts),
            now=now,
        )
        if isinstance(decision, EnrolmentRefused):
            return decision
        event_id = event_uuid(customer_id, decision.event_id)
        await self._record(
            conn,
            customer_id,
            events.CustomerEnrolled(
                event_id=event_id,
                aggregate_id=account_stream(customer_id),
                aggregate_version=1,  # replaced in _record
                occurred_at=decision.occurred_at,
                customer_ids=(customer_id,),
                customer_id=customer_id,
            ),
            dataclasses.replace(decision, event_id=str(event_id)),
        )
        return await self.statement(conn, customer_id, now)

    async def redeem(
        self, conn: Connection, customer_id: str, reward_id: str, redemption_id: str, now: datetime
    ) -> f.RewardRedeemed | RedemptionRefused:
        """LOY-6: redeem a catalogue reward, with a co-payment for a shortfall if allowed."""
        reward = self.config.rewards.get(reward_id)
        if reward is None:
            raise UnknownReward(reward_id)
        ledger = await self.statement(conn, customer_id, now)
        decision = decide_redemption(ledger, reward, redemption_id, now)
        if isinstance(decision, RedemptionRefused):
            return decision
        event_id = event_uuid(customer_id, decision.event_id)
        recorded = dataclasses.replace(decision, event_id=str(event_id))
        await self._record(
            conn,
            customer_id,
            events.RewardRedeemed(
                event_id=event_id,
                aggregate_id=account_stream(customer_id),
                aggregate_version=1,
                occurred_at=decision.occurred_at,
                customer_ids=(customer_id,),
                customer_id=customer_id,
                redemption_id=redemption_id,
                reward_id=reward_id,
                points=decision.points,
                co_payment_cents=decision.co_payment_cents,
            ),
            recorded,
        )
        return recorded

    async def _record(self, conn: Connection, customer_id: str, event: Event, fact: f.Fact) -> None:
        """Append the decision to the account stream (which serialises concurrent ones;
        a loser gets ConcurrencyConflict) and store it as a fact at once."""
        stream = account_stream(customer_id)
        version = await self.store.stream_version(conn, stream)
        await self.store.append(
            conn, stream, version, [event.model_copy(update={"aggregate_version": version + 1})]
        )
        await fact_store.add_facts(conn, [(customer_id, fact)])

    async def announce(self, conn: Connection, customer_id: str, as_of: datetime) -> int:
        """The ledger job for one customer: publish each ledger movement and expiry warning
        once, and keep the operators' statement row current. Returns what was announced."""
        ledger = await self.statement(conn, customer_id, as_of)
        messages = [*_movements(ledger), *_warnings(ledger, as_of, self.config)]
        fresh = await _not_yet_announced(conn, customer_id, [key for key, _ in messages])
        outgoing = [message for key, message in messages if key in fresh]
        if outgoing:
            await self.store.enqueue(conn, outgoing)
        await conn.execute(
            "INSERT INTO statements (customer_id, as_of, balance, membership)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id) DO UPDATE"
            " SET as_of = excluded.as_of, balance = excluded.balance,"
            " membership = excluded.membership WHERE statements.as_of <= excluded.as_of",
            customer_id,
            as_of,
            ledger.balance,
            ledger.membership.status.value,
        )
        return len(outgoing)


Announcement = tuple[str, Event]


def _movements(ledger: Ledger) -> list[Announcement]:
    customer = ledger.customer_id
    lots = {lot.lot_id: lot for lot in ledger.lots}
    found: list[Announcement] = []
    for entry in ledger.history:
        common = _common(customer, entry.entry_id, entry.at)
        if entry.kind is EntryKind.CREDIT:
            lot = lots[entry.entry_id]
            found.append(
                (
                    entry.entry_id,
                    events.PointsCredited(
                        **common,
                        lot_id=lot.lot_id,
                        points=lot.points,
                        rule=lot.rule,
                        credited_on=lot.credited_on,
                        expires_on=lot.expires_on,
                    ),
                )
            )
        elif entry.kind is EntryKind.EXPIRY and entry.points:
            assert isinstance(entry.reason, ExpiryReason)
            found.append(
                (
                    entry.entry_id,
                    events.PointsExpired(
                        **common,
                        points=-entry.points,
                        expired_on=entry.reason.expires_on,
                    ),
                )
            )
        elif entry.kind is EntryKind.FORFEIT:
            found.append((entry.entry_id, events.PointsForfeited(**common, points=-entry.points)))
    return found


def _warnings(ledger: Ledger, as_of: datetime, config: LoyaltyConfig) -> list[Announcement]:
    return [
        (
            w.warning_id,
            events.PointsExpiryWarningIssued(
                **_common(ledger.customer_id, w.warning_id, as_of),
                points=w.points,
                expires_on=w.expires_on,
            ),
        )
        for w in expiry_warnings(ledger, as_of, config)
    ]


def _common(customer_id: str, key: str, at: datetime) -> dict[str, object]:
    return {
        "event_id": event_uuid(customer_id, key),
        "aggregate_id": account_stream(customer_id),
        "aggregate_version": 1,
        "occurred_at": at,
        "customer_ids": (customer_id,),
        "customer_id": customer_id,
    }


async def _not_yet_announced(conn: Connection, customer_id: str, keys: list[str]) -> set[str]:
    rows = await conn.fetch(
        "INSERT INTO announced (customer_id, entry_id) SELECT $1, unnest($2::text[])"
        " ON CONFLICT DO NOTHING RETURNING entry_id",
        customer_id,
        keys,
    )
    return {row["entry_id"] for row in rows}
