"""OPS-2, unit: a fetched batch mixes events of several traces; each event's handling - and
what the handler records into the outbox - continues the trace of that event, not the
trace of the batch's first record. Driven through FastStream's in-memory TestKafkaBroker
(the stream's real subscriber, parser and inbox consumer); spans read from an in-memory
exporter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import encode
from contracts_schemas.contracts import PremiumPaid
from faststream.kafka import TestKafkaBroker
from faststream.kafka.testing import build_message
from kit_factories import premium_paid
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from servicekit.memory import InMemoryUnitOfWork, memory_transactions
from servicekit.settings import ServiceSettings
from servicekit.stream import EventStream, Rejected
from servicekit.tracing import current_traceparent

TOPIC = "portal.contracts.policy.v1"
GROUP = "loyalty"
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"
SPAN_A, SPAN_B = "00f067aa0ba902b7", "b7ad6b7169203331"
PARENT_A = f"00-{TRACE_A}-{SPAN_A}-01"
PARENT_B = f"00-{TRACE_B}-{SPAN_B}-01"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The process's one tracer provider (installed once), with an in-memory exporter."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@dataclass(frozen=True)
class Call:
    """One handler call: its messages and the `traceparent` the outbox would store."""

    policies: list[str]
    traceparent: str | None

    @property
    def trace_id(self) -> str | None:
        return self.traceparent.split("-")[1] if self.traceparent else None


class Recording:
    """Records into the outbox what it applies, and notes each call's trace context."""

    def __init__(self, refuse_policy: str | None = None) -> None:
        self.calls: list[Call] = []
        self.refuse_policy = refuse_policy

    async def __call__(self, messages: Sequence[Contract], uow: InMemoryUnitOfWork) -> None:
        paid = [m for m in messages if isinstance(m, PremiumPaid)]
        if any(m.policy_id == self.refuse_policy for m in paid):
            raise Rejected("policy closed")
        self.calls.append(Call([m.policy_id for m in paid], current_traceparent()))
        await uow.events.enqueue(messages)


def stream_with(handler: Recording) -> EventStream[InMemoryUnitOfWork]:
    settings = ServiceSettings(service_name="loyalty", instance_id="unit")
    stream = EventStream(settings, memory_transactions(InMemoryUnitOfWork()))
    stream.subscriber(GROUP, TOPIC)(handler)
    return stream


async def record_of(
    message: PremiumPaid, offset: int, traceparent: str | None
) -> ConsumerRecord[bytes, bytes]:
    event = encode(message, "/contracts", traceparent)
    record = await build_message(
        event.data,
        TOPIC,
        key=message.policy_id.encode(),
        headers={k: v.decode() for k, v in event.headers()},
        serializer=None,
    )
    record.offset = offset
    return record


async def consume(
    stream: EventStream[InMemoryUnitOfWork], batch: list[tuple[str, str | None]]
) -> None:
    """One fetched batch of (policy, traceparent) through the stream's inbox subscriber."""
    (subscriber,) = (s for s in stream.broker.subscribers if getattr(s, "group_id", None) == GROUP)
    async with TestKafkaBroker(stream.broker):
        records = [
            await record_of(premium_paid(policy, 1), n, parent)
            for n, (policy, parent) in enumerate(batch)
        ]
        await subscriber.process_message(records)


def finished(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def hex_trace(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def hex_parent(span: ReadableSpan) -> str | None:
    return format(span.parent.span_id, "016x") if span.parent else None


async def test_ops2_each_run_of_one_trace_is_handled_under_that_trace(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    handler = Recording()
    stream = stream_with(handler)

    await consume(stream, [
        ("a-1", PARENT_A), ("a-2", PARENT_A), ("b-1", PARENT_B), ("a-3", PARENT_A),
        ("none", None),
    ])  # fmt: skip

    # Consecutive runs, in order; the outbox stores each run's own trace.
    assert [c.policies for c in handler.calls] == [["a-1", "a-2"], ["b-1"], ["a-3"], ["none"]]
    assert [c.trace_id for c in handler.calls[:3]] == [TRACE_A, TRACE_B, TRACE_A]
    (batch,) = finished(spans, f"consume {GROUP}")
    assert batch.parent is None, "the batch's span is a root span"
    assert hex_trace(batch) not in (TRACE_A, TRACE_B)
    assert handler.calls[3].trace_id == hex_trace(batch), "no traceparent: the batch's trace"
    linked = [(format(x.context.trace_id, "032x"), format(x.context.span_id, "016x"))
              for x in batch.links]  # fmt: skip
    assert linked == [(TRACE_A, SPAN_A), (TRACE_B, SPAN_B)], "one link per distinct context"
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 5

    runs = finished(spans, f"process {GROUP}")
    assert [(hex_trace(s), hex_parent(s)) for s in runs] == [
        (TRACE_A, SPAN_A), (TRACE_B, SPAN_B), (TRACE_A, SPAN_A),
        (hex_trace(batch), format(batch.context.span_id, "016x")),
    ]  # fmt: skip
    for run, count in zip(runs, (2, 1, 1, 1), strict=True):
        assert run.kind is SpanKind.CONSUMER
        assert dict(run.attributes or {}) == {
            "messaging.system": "kafka",
            "messaging.consumer.group.name": GROUP,
            "messaging.batch.message_count": count,
        }
    # The handler's spans are the ones the outbox continues from.
    assert [c.traceparent.rsplit("-", 1)[0] for c in handler.calls if c.traceparent] == [
        f"00-{hex_trace(s)}-{format(s.context.span_id, '016x')}" for s in runs
    ]


async def test_ops2_a_refused_message_in_a_mixed_batch_keeps_every_trace_apart(
    spans: InMemorySpanExporter,
) -> None:
    """The batch is refused, then applied one by one: each message still under its trace."""
    spans.clear()
    handler = Recording(refuse_policy="b-bad")
    stream = stream_with(handler)

    await consume(stream, [("a-1", PARENT_A), ("b-bad", PARENT_B), ("b-2", PARENT_B)])

    applied: dict[str, Any] = {c.policies[0]: c.trace_id for c in handler.calls}
    assert applied == {"a-1": TRACE_A, "b-2": TRACE_B}
    failed = [s for s in finished(spans, f"process {GROUP}") if not s.status.is_ok]
    assert {hex_trace(s) for s in failed} == {TRACE_B}
    assert all(dict(s.attributes or {}).get("exception.type") == "Rejected" for s in failed)
