"""The cost of instrumentation (OPS-2): metrics and tracing on vs off, in one run.

- HTTP: an authenticated read (ES256 token verified, one JSON answer) through a
  servicekit app, `create_app(instrument=True)` with an SDK tracer provider exporting
  every span, against `instrument=False`.
- Consumer fold: `InboxConsumer.process` applying batches of PremiumPaid records through
  the inbox (in memory: no database or broker time dilutes the figure, so it is the
  upper bound of the relative cost), with the batch span and the counters, against the
  same with a no-op tracer and no-op metrics.

Aim: each instrumented figure at least 90 % of its uninstrumented baseline.

How: off and on alternate for `ROUNDS` rounds (which goes first alternates too), and each
side's figure is its median round, in CPU seconds of this process (`time.process_time`:
the span exporter's thread included). On a machine that other work loads, wall time
mostly measures the neighbours (a run of "off" first and "on" later read 0.62 while the
CPU spent differed by a few per cent); the wall-time ratio is in the note.
`async def run(bootstrap, dsn) -> list[Row]`, like bench/notifier_email.py; alone:
`python -m bench.instrumentation`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from gateway.adapters.upstreams import skip_sniffio_lookups
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from servicekit import stream as stream_module
from servicekit.auth import StaticKeys, TokenVerifier, generate_signing_key, mint_token
from servicekit.clock import SystemClock
from servicekit.http import CurrentCustomer, create_app
from servicekit.memory import InMemoryUnitOfWork, memory_transactions
from servicekit.stream import InboxConsumer

from bench.common import PremiumPaidFactory, Row, row

SECTION = "instrumentation"
AIM = ">= 0.90 x uninstrumented"
ROUNDS = 5


class _Discard(SpanExporter):
    """Spans are made, batched and handed over: the exporter's own I/O is not measured."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _install_tracing() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(_Discard()))
        trace.set_tracer_provider(provider)


# --------------------------------------------------------------------------- HTTP


def _app(instrument: bool, jwks: dict[str, Any]) -> Any:
    app = create_app("bench", instrument=instrument)
    app.state.token_verifier = TokenVerifier(StaticKeys(jwks), SystemClock(), "portal")

    @app.get("/accounts/{account}/statement")
    async def statement(account: str, principal: CurrentCustomer) -> dict[str, Any]:
        return {"account": account, "customer": principal.customer_id, "balance": 240}

    return app


Timing = tuple[float, float]  # (CPU seconds of the process, wall seconds)


async def _reads(instrument: bool, requests: int, token: str, jwks: dict[str, Any]) -> Timing:
    transport = httpx.ASGITransport(app=_app(instrument, jwks))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for _ in range(50):  # warm up
            await client.get("/accounts/a-1/statement", headers=headers)
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(requests):
            answer = await client.get(f"/accounts/a-{n % 100}/statement", headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"read answered {answer.status_code}")
        return time.process_time() - cpu, time.perf_counter() - wall


# --------------------------------------------------------------------------- consumer


class _NoMetric:
    def labels(self, *_: Any) -> _NoMetric:
        return self

    def inc(self, *_: Any) -> None:
        return None

    @contextmanager
    def time(self) -> Iterator[None]:
        yield


@contextmanager
def _uninstrumented_stream() -> Iterator[None]:
    """The stream module's tracer and metrics replaced by no-ops, for the baseline."""
    module: Any = stream_module
    names = ("tracer", "CONSUMED", "BATCH_SECONDS")
    saved = {name: getattr(module, name) for name in names}
    module.tracer = lambda name: trace.NoOpTracer()
    module.CONSUMED = module.BATCH_SECONDS = _NoMetric()
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


async def _fold(records: list[Any], batch: int) -> Timing:
    folded = 0

    async def handler(messages: Any, uow: InMemoryUnitOfWork) -> None:
        # Counted, not kept in the unit of work: the in-memory transaction deep-copies its
        # state at every begin, so kept messages made each batch cost more than the one
        # before (20,000 events: ~850 events/s, the copies diluting what is measured).
        nonlocal folded
        folded += len(messages)

    async def nowhere(_: Any) -> None:
        return None

    uow = InMemoryUnitOfWork()
    consumer = InboxConsumer("bench.fold", handler, memory_transactions(uow), nowhere, "dlq")
    cpu, wall = time.process_time(), time.perf_counter()
    for first in range(0, len(records), batch):
        await consumer.process(records[first : first + batch])
    timing = time.process_time() - cpu, time.perf_counter() - wall
    if consumer.applied != len(records) or folded != len(records):
        raise RuntimeError(f"applied {consumer.applied}, folded {folded} of {len(records)}")
    return timing


def _records(events: int) -> list[Any]:
    from aiokafka import ConsumerRecord

    factory = PremiumPaidFactory()
    models: list[Contract] = [factory.model(i) for i in range(events)]
    records = []
    for offset, message in enumerate(models):
        event = encode(message, "/contracts", "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01")
        records.append(
            ConsumerRecord(
                "portal.contracts.policy.v1",
                0,
                offset,
                0,
                0,
                b"k",
                event.data,
                None,
                0,
                len(event.data),
                list(event.headers()),
            )
        )
    return records


# --------------------------------------------------------------------------- run


async def _alternating(measure: Any, off: Any, on: Any) -> tuple[Timing, Timing]:
    """`ROUNDS` rounds of off and on, the order swapped each round; each side's median
    round (CPU and wall each)."""
    offs: list[Timing] = []
    ons: list[Timing] = []
    for n in range(ROUNDS):
        for side in (off, on) if n % 2 == 0 else (on, off):
            (offs if side is off else ons).append(await measure(side))
    return _median(offs), _median(ons)


def _median(timings: list[Timing]) -> Timing:
    return (
        statistics.median(t[0] for t in timings),
        statistics.median(t[1] for t in timings),
    )


def _rows(name: str, count: int, on: Timing, off: Timing, unit: str) -> Row:
    ratio = off[0] / on[0]
    return row(
        SECTION, f"{name}, metrics and tracing on", events=count, seconds=on[0],
        baseline=f"{name}, off", baseline_events=count, baseline_seconds=off[0],
        aim=AIM, met=ratio >= 0.9,
        note=f"{unit}; CPU seconds, median of {ROUNDS} alternating rounds; "
        f"wall-time ratio {off[1] / on[1]:.2f}",
    )  # fmt: skip


async def run(bootstrap: str = "", dsn: str = "", quick: bool = False) -> list[Row]:
    _install_tracing()
    # The client is httpx: without this each request searched sys.path for sniffio (see
    # gateway.adapters.upstreams), on both sides alike, diluting the difference.
    skip_sniffio_lookups()
    private, jwks = generate_signing_key("bench")
    token = mint_token(private, "cust-1", "portal", datetime.now(UTC) + timedelta(hours=1))
    requests, events = (400, 2_000) if quick else (2_000, 20_000)
    off, on = await _alternating(
        lambda instrument: _reads(instrument, requests, token, jwks), False, True
    )
    records = _records(events)

    async def fold(instrument: bool) -> Timing:
        if instrument:
            return await _fold(records, 500)
        with _uninstrumented_stream():
            return await _fold(records, 500)

    fold_off, fold_on = await _alternating(fold, False, True)
    return [
        _rows("authenticated HTTP read", requests, on, off, "requests, in process (ASGI)"),
        _rows(
            "consumer fold (inbox, in memory)", events, fold_on, fold_off, "events, batches of 500"
        ),
    ]


if __name__ == "__main__":
    for result in asyncio.run(run()):
        print(result)
