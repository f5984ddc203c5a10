"""The notifier's Prometheus metrics (served on `/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TRANSITIONS = Counter(
    "notifier_deliveries_total",
    "Delivery transitions by channel and resulting status (queued, sending, sent, failed, "
    "dead, expired, suppressed, deferred)",
    ["channel", "status"],
)
SEND_SECONDS = Histogram(
    "notifier_send_seconds", "Time a provider took to answer one send", ["channel"]
)
