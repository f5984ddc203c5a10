"""OPS-2, unit: a fetched batch is handled by ONE handler call whatever traces its events
belong to (batching survives real traffic, where every event has a trace of its own).
The batch's span is a root span linked to its events' trace contexts (at most MAX_LINKS);
the handler's `process` span continues the events' trace when they all share one, and
the batch's trace otherwise - and what the handler records into the outbox carries that
span's context. Driven through FastStream's in-memory TestKafkaBroker (the stream's real
subscriber, parser and inbox consumer); spans read from an in-memory exporter."""

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
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from servicekit.memory import InMemoryUnitOfWork, memory_transactions
from servicekit.settings import ServiceSettings
from servicekit.stream import MAX_LINKS, EventStream, Rejected, link_context
from servicekit.tracing import context_from_traceparent, current_traceparent

TOPIC = "portal.contracts.policy.v1"
GROUP = "loyalty"
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"
SPAN_A, SPAN_B = "00f067aa0ba902b7", "b7ad6b7169203331"
PARENT_A = f"00-{TRACE_A}-{SPAN_A}-01"
PARENT_B = f"00-{TRACE_B}-{SPAN_B}-01"


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


def span_id(span: ReadableSpan) -> str:
    return format(span.context.span_id, "016x")


def linked(span: ReadableSpan) -> list[tuple[str, str]]:
    return [(format(x.context.trace_id, "032x"), format(x.context.span_id, "016x"))
            for x in span.links]  # fmt: skip


def parent_of(traceparent: str | None) -> tuple[str, str] | None:
    """(trace id, span id) of a traceparent the outbox would store."""
    return (traceparent.split("-")[1], traceparent.split("-")[2]) if traceparent else None


async def test_ops2_a_batch_of_one_trace_is_handled_in_one_call_that_continues_the_trace(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    handler = Recording()
    stream = stream_with(handler)

    await consume(stream, [("a-1", PARENT_A), ("a-2", PARENT_A), ("a-3", PARENT_A)])

    assert [c.policies for c in handler.calls] == [["a-1", "a-2", "a-3"]]
    (batch,) = finished(spans, f"consume {GROUP}")
    assert batch.parent is None, "the batch's span is a root span"
    assert linked(batch) == [(TRACE_A, SPAN_A)]
    (process,) = finished(spans, f"process {GROUP}")
    assert (hex_trace(process), hex_parent(process)) == (TRACE_A, SPAN_A)
    assert process.kind is SpanKind.CONSUMER
    assert dict(process.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.consumer.group.name": GROUP,
        "messaging.batch.message_count": 3,
    }
    # What the handler records continues the request's trace, from its process span.
    assert parent_of(handler.calls[0].traceparent) == (TRACE_A, span_id(process))


async def test_ops2_a_batch_of_several_traces_is_handled_in_one_call_under_the_batch_trace(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    handler = Recording()
    stream = stream_with(handler)

    await consume(stream, [
        ("a-1", PARENT_A), ("a-2", PARENT_A), ("b-1", PARENT_B), ("a-3", PARENT_A),
        ("none", None),
    ])  # fmt: skip

    assert [c.policies for c in handler.calls] == [["a-1", "a-2", "b-1", "a-3", "none"]]
    (batch,) = finished(spans, f"consume {GROUP}")
    assert batch.parent is None, "the batch's span is a root span"
    assert hex_trace(batch) not in (TRACE_A, TRACE_B)
    assert linked(batch) == [(TRACE_A, SPAN_A), (TRACE_B, SPAN_B)], "one per distinct context"
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 5
    assert "messaging.batch.links_omitted" not in batch.attributes
    (process,) = finished(spans, f"process {GROUP}")
    assert (hex_trace(process), hex_parent(process)) == (hex_trace(batch), span_id(batch))
    assert dict(process.attributes or {})["messaging.batch.message_count"] == 5
    assert parent_of(handler.calls[0].traceparent) == (hex_trace(batch), span_id(process))


async def test_ops2_a_batch_without_trace_contexts_is_handled_under_the_batch_trace(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    handler = Recording()
    stream = stream_with(handler)

    await consume(stream, [("none-1", None), ("none-2", None)])

    (batch,) = finished(spans, f"consume {GROUP}")
    assert batch.links == ()
    (process,) = finished(spans, f"process {GROUP}")
    assert (hex_trace(process), hex_parent(process)) == (hex_trace(batch), span_id(batch))
    assert [c.trace_id for c in handler.calls] == [hex_trace(batch)]


async def test_ops2_the_batch_links_to_at_most_max_links_traces_and_counts_the_rest(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    handler = Recording()
    stream = stream_with(handler)
    parents = [f"00-{n + 1:032x}-{n + 1:016x}-01" for n in range(MAX_LINKS + 5)]

    await consume(stream, [(f"p-{n}", parent) for n, parent in enumerate(parents)])

    assert len(handler.calls) == 1, "one handler call for the whole batch"
    (batch,) = finished(spans, f"consume {GROUP}")
    assert linked(batch) == [(p.split("-")[1], p.split("-")[2]) for p in parents[:MAX_LINKS]]
    assert dict(batch.attributes or {})["messaging.batch.links_omitted"] == 5


async def test_ops2_a_refused_message_in_a_mixed_batch_keeps_every_trace_apart(
    spans: InMemorySpanExporter,
) -> None:
    """The batch is refused, then applied one by one: each message under its own trace."""
    spans.clear()
    handler = Recording(refuse_policy="b-bad")
    stream = stream_with(handler)

    await consume(stream, [("a-1", PARENT_A), ("b-bad", PARENT_B), ("b-2", PARENT_B)])

    applied: dict[str, Any] = {c.policies[0]: c.trace_id for c in handler.calls}
    assert applied == {"a-1": TRACE_A, "b-2": TRACE_B}
    (batch,) = finished(spans, f"consume {GROUP}")
    failed = [s for s in finished(spans, f"process {GROUP}") if not s.status.is_ok]
    # The whole batch's call (under the batch's trace), then b-bad's own (under B's).
    assert [hex_trace(s) for s in failed] == [hex_trace(batch), TRACE_B]
    assert all(dict(s.attributes or {}).get("exception.type") == "Rejected" for s in failed)


async def test_ops2_an_unreadable_trace_context_is_neither_parent_nor_link(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    handler = Recording()
    stream = stream_with(handler)

    await consume(stream, [("x-1", "not-a-traceparent"), ("x-2", "not-a-traceparent")])

    assert [c.policies for c in handler.calls] == [["x-1", "x-2"]]
    (batch,) = finished(spans, f"consume {GROUP}")
    assert batch.links == ()
    (process,) = finished(spans, f"process {GROUP}")
    assert (hex_trace(process), hex_parent(process)) == (hex_trace(batch), span_id(batch))


TRACEPARENTS = [
    f"00-{'a' * 32}-{'b' * 16}-01",
    f"00-{'0' * 31}1-{'0' * 15}1-00",
    f" \t00-{'c' * 32}-{'d' * 16}-01 \t",
    f"01-{'c' * 32}-{'d' * 16}-01-and-more",
    f"00-{'c' * 32}-{'d' * 16}-01-and-more",
    f"ff-{'c' * 32}-{'d' * 16}-01",
    f"00-{'0' * 32}-{'d' * 16}-01",
    f"00-{'c' * 32}-{'0' * 16}-01",
    f"00-{'C' * 32}-{'d' * 16}-01",
    f"00-{'c' * 32}-{'d' * 16}-1",
    f"00-{'c' * 32}-{'d' * 16}-01\n",
    f"02-{'c' * 32}-{'d' * 16}-01-{'x' * 512}",
    "not a traceparent",
    "",
]


@pytest.mark.parametrize("traceparent", TRACEPARENTS)
def test_ops2_a_link_points_where_the_propagator_reads_the_traceparent(traceparent: str) -> None:
    """The batch's links read each `traceparent` without OpenTelemetry's propagator (no
    context and span built per value), to the same span context - or to none where the
    propagator finds no valid one."""
    expected = trace.get_current_span(context_from_traceparent(traceparent)).get_span_context()
    assert link_context(traceparent) == (expected if expected.is_valid else None)
