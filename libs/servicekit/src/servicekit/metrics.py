"""Prometheus metrics every service exposes on /metrics (OPS-2)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

OUTBOX_PUBLISHED = Counter(
    "portal_outbox_published_total", "Events the outbox relay published", ["service"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "portal_outbox_publish_failures_total", "Relay rounds the broker refused", ["service"]
)
CONSUMED = Counter(
    "portal_consumer_events_total",
    "Events a consumer group handled, by outcome",
    ["consumer", "outcome"],  # applied | duplicate | dead_lettered
)
BATCH_SECONDS = Histogram(
    "portal_consumer_batch_seconds", "Time to apply one fetched batch", ["consumer"]
)
