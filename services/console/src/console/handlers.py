"""The console's use cases (OPS-1/OPS-3): the overview, dead letters and their replays,
a customer's history with the reason recorded, trace lookup, the loyalty jobs.

No SQL and no connections here: Kafka, the services' HTTP APIs, Prometheus and the audit
trail come in as adapters (wired by bootstrap; in-memory audit in unit tests).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from console.adapters.audit import Audit, ReplayRecord
from console.adapters.kafka import DeadLetterView, HistoryEntry, KafkaOps, ReplayRefused
from console.adapters.services import Prometheus, Services, UpstreamError
from console.adapters.traces import Span, lookup
from console.auth import Operator

JOB_KINDS = ("monthly", "january", "expiry")

# Figures from Prometheus (instant queries). Names follow servicekit.metrics and the
# services' own metrics (OPS-2); PORTAL_PROMETHEUS_QUERIES overrides any of them.
DEFAULT_QUERIES: dict[str, str] = {
    "throughput": "sum by (group) (rate(portal_consumer_events_total[5m]))",
    "published": "sum by (service) (rate(portal_outbox_published_total[5m]))",
    "outbox_backlog": "sum by (service) (portal_outbox_backlog)",
    "outbox_age": "max by (service) (portal_outbox_oldest_unpublished_age_seconds)",
    "lag": "sum by (group) (portal_consumer_lag)",
    "dead_lettered": 'sum by (group) (portal_consumer_events_total{outcome="dead_lettered"})',
    "notifications": "sum by (channel, status) (notifier_deliveries_total)",
    "claims": "sum by (status) (portal_claims)",
    "points": "sum by (movement) (increase(portal_loyalty_points_total[{month}s]))",
    "http_5xx": 'sum by (service) (rate(portal_http_requests_total{status=~"5.."}[5m]))',
}
# Charts: time series over the last hour.
CHARTS: dict[str, str] = {
    "throughput": "Verarbeitete Ereignisse pro Sekunde (je Consumer-Gruppe)",
    "published": "Veröffentlichte Ereignisse pro Sekunde (je Dienst)",
    "lag": "Consumer-Lag (je Gruppe)",
    "outbox_backlog": "Outbox-Rückstand (je Dienst)",
    "http_5xx": "HTTP-5xx-Antworten pro Sekunde (je Dienst)",
}


@dataclass(frozen=True)
class ReplayResult:
    ref: str
    ok: bool
    detail: str
    event_type: str | None = None
    original_topic: str | None = None


@dataclass
class Console:
    kafka: KafkaOps
    services: Services
    prometheus: Prometheus
    audit: Audit
    trace_file: Path | None = None
    queries: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_QUERIES))
    month_start: float | None = None  # tests pin "this month"

    # ------------------------------------------------------------------ overview

    async def overview(self) -> dict[str, Any]:
        """OPS-1: health and version, lag, dead letters, throughput and the business
        figures. Kafka-side figures are read directly; the rest comes from Prometheus."""
        health, lags, dlq_topics, event_topics = await asyncio.gather(
            self.services.health(),
            self.kafka.lag(),
            self.kafka.dead_letter_topics(),
            self.kafka.event_topics(),
        )
        dead, events = await asyncio.gather(
            self.kafka.counts(dlq_topics), self.kafka.counts(event_topics)
        )
        lag_by_group: dict[str, int] = {}
        for lag in lags:
            lag_by_group[lag.group] = lag_by_group.get(lag.group, 0) + lag.lag
        figures = {
            name: await self._figure(name)
            for name in (
                "throughput",
                "published",
                "outbox_backlog",
                "notifications",
                "claims",
                "points",
            )
        }
        return {
            "at": time.time(),
            "services": [asdict(h) for h in health],
            "lag": [{"group": g, "lag": v} for g, v in sorted(lag_by_group.items())],
            "dead_letters": [{"topic": t, "count": n} for t, n in sorted(dead.items())],
            "events": [{"topic": t, "count": n} for t, n in sorted(events.items())],
            "events_total": sum(events.values()),
            "figures": figures,
            "prometheus": self.prometheus.url is not None,
        }

    async def _figure(self, name: str) -> list[dict[str, Any]]:
        expr = self.queries[name].replace("{month}", str(int(self._seconds_this_month())))
        return [
            {"labels": r.get("metric", {}), "value": float(r.get("value", [0, "0"])[1])}
            for r in await self.prometheus.query(expr)
        ]

    def _seconds_this_month(self) -> float:
        now = time.time()
        if self.month_start is not None:
            return max(60.0, now - self.month_start)
        local = time.gmtime(now)
        start = time.mktime((local.tm_year, local.tm_mon, 1, 0, 0, 0, 0, 0, 0)) - time.timezone
        return max(60.0, now - start)

    async def series(self, name: str, minutes: int = 60) -> dict[str, Any]:
        """A chart's time series from Prometheus, as plotly traces."""
        if name not in CHARTS:
            raise KeyError(name)
        end = time.time()
        step = max(15, minutes * 60 // 240)
        result = await self.prometheus.query_range(
            self.queries[name], end - minutes * 60, end, step
        )
        traces = [
            {
                "name": ", ".join(f"{v}" for v in r.get("metric", {}).values()) or name,
                "x": [
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(p[0])))
                    for p in r.get("values", [])
                ],
                "y": [float(p[1]) for p in r.get("values", [])],
                "type": "scatter",
                "mode": "lines",
            }
            for r in result
        ]
        return {"name": name, "title": CHARTS[name], "traces": traces}

    # ------------------------------------------------------------------ dead letters

    async def dead_letters(self, topic: str | None = None) -> list[dict[str, Any]]:
        views = await self.kafka.dead_letters(topic)
        replays = await self.audit.replays_of([v.ref for v in views])
        return [
            asdict(v) | {"ref": v.ref, "replays": [asdict(r) for r in replays.get(v.ref, [])]}
            for v in views
        ]

    async def dead_letter(self, ref: str) -> dict[str, Any]:
        view = await self.kafka.dead_letter(ref)
        replays = await self.audit.replays_of([ref])
        return asdict(view) | {"ref": ref, "replays": [asdict(r) for r in replays.get(ref, [])]}

    async def replay(self, refs: list[str], operator: Operator) -> list[ReplayResult]:
        """Replay each dead letter to its original topic and record who did it."""
        results = []
        for ref in dict.fromkeys(refs):
            view: DeadLetterView | None = None
            try:
                view = await self.kafka.replay(ref)
                result = ReplayResult(ref, True, "replayed", view.event_type, view.original_topic)
            except (ReplayRefused, ValueError) as refused:
                result = ReplayResult(ref, False, str(refused))
            await self.audit.replayed(
                ReplayRecord(
                    operator=operator.name,
                    kind="kafka",
                    dead_letter=ref,
                    outcome="replayed" if result.ok else f"refused: {result.detail}",
                    original_topic=view.original_topic if view else None,
                    original_partition=view.original_partition if view else None,
                    original_offset=view.original_offset if view else None,
                    event_type=view.event_type if view else None,
                    event_id=view.event_id if view else None,
                    reason=view.reason if view else "",
                )
            )
            results.append(result)
        return results

    async def notifier_dead_letters(self) -> tuple[list[dict[str, Any]], str | None]:
        try:
            return await self.services.notifier_dead_letters(), None
        except UpstreamError as error:
            return [], error.detail

    async def notifier_replay(self, keys: list[str], operator: Operator) -> list[ReplayResult]:
        results = []
        for key in dict.fromkeys(keys):
            try:
                await self.services.notifier_replay(key)
                result = ReplayResult(key, True, "queued again")
            except UpstreamError as error:
                result = ReplayResult(key, False, error.detail)
            await self.audit.replayed(
                ReplayRecord(
                    operator=operator.name,
                    kind="notifier",
                    dead_letter=key,
                    outcome="replayed" if result.ok else f"refused: {result.detail}",
                )
            )
            results.append(result)
        return results

    # ------------------------------------------------------------------ support

    async def customer_history(
        self, customer_id: str, reason: str, operator: Operator
    ) -> list[HistoryEntry]:
        """A customer's events across services, for support; the lookup and its reason
        are recorded before anything is read."""
        if len(reason.strip()) < 3:
            raise ValueError("Bitte geben Sie den Anlass der Abfrage an.")
        await self.audit.looked_up(operator.name, customer_id, reason.strip())
        return await self.kafka.customer_history(customer_id)

    def trace(self, wanted: str) -> list[Span]:
        return lookup(self.trace_file, wanted)

    # ------------------------------------------------------------------ jobs

    async def run_job(self, kind: str, business_date: date, operator: Operator) -> dict[str, Any]:
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job {kind!r}")
        try:
            result = await self.services.run_loyalty_job(kind, business_date)
        except UpstreamError as error:
            await self.audit.job_run(operator.name, kind, business_date, f"refused: {error.detail}")
            raise
        await self.audit.job_run(
            operator.name, kind, business_date, f"announced {result.get('announced')}"
        )
        return result
