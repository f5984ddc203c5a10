"""The stream side of a service: a FastStream `KafkaBroker` with inbox subscribers.

A service declares what it consumes with `@stream.subscriber(group, *topics)` on a
handler `(messages, uow) -> None`; this module supplies the guarantees around it:

- batches are fetched from the earliest offset of a new group, with a static
  `group_instance_id`, so a restarted instance gets its partitions back at once;
- undecodable or schema-invalid messages, messages a handler `Rejected`, and values the
  database refuses go to the group's dead-letter topic with the reason in `x-dlq-*`
  headers, and the batch goes on without them;
- the inbox rows and the handler's effects commit in ONE transaction, and only then are
  the offsets committed (FastStream's own ack policy is switched off: `MANUAL`);
- anything else (the database or broker away) seeks back to the batch's first offsets
  and tries again after a pause, so nothing is skipped.

Tracing (OPS-2), after the OpenTelemetry messaging conventions for batches: a fetched
batch is handled by ONE handler call (its fresh messages, in order, in the batch's one
transaction) - batching is where the throughput comes from, and real traffic, where every
message has a trace of its own, would otherwise get one call per message. Spans:
- `consume <group>`: the batch's span, a root span (a batch belongs to no one trace) with
  a link to each distinct trace context its records carry, at most `MAX_LINKS` of them
  (the SDK's default limit; the number left out is the attribute
  `messaging.batch.links_omitted`, and every message's context is still in its record);
- `process <group>`: the handler call. When every message handed to it carries the SAME
  trace context (a request's own events, a batch of one), it is a child of that context,
  so the trace of a request goes on through the consumer and whatever it records (the
  outbox stores the active `traceparent` with each event). Otherwise - messages of several
  traces, or none - it is a child of the batch's span: what the call records continues
  the batch's trace, whose root links to every cause. No span per message: its cost
  would be paid per event, and the links already say which traces a batch served.
When the batch is refused and applied one message at a time, each of those calls has one
message, so it continues that message's own trace.

FastStream's consume loop swallows whatever a handler or its parser raises and fetches
the next batch, whose commit would then move past the failed one. So nothing may escape
here: the batch parser decodes nothing (the inbox consumer decodes and dead-letters
records itself), and every failed batch is rewound before a later one is applied or
committed (`batches.BatchLoop`, which also applies a large batch while the next is decoded).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from contracts_schemas.base import Contract
from contracts_schemas.cloudevents import CloudEvent, InvalidMessage, decode, from_kafka
from contracts_schemas.topics import dead_letter_topic
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl
from faststream.kafka.testing import FakeProducer
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from servicekit.batches import BatchLoop
from servicekit.kafka import OutgoingRecord, Record, ensure_topics, send_all, servers
from servicekit.logging import get_logger
from servicekit.metrics import BATCH_SECONDS, CONSUMED
from servicekit.postgres import held, release_held
from servicekit.settings import ServiceSettings
from servicekit.tracing import context_from_headers, tracer
from servicekit.unit_of_work import Transactions, UnitOfWork, Unstorable

log = get_logger(__name__)

U = TypeVar("U", bound=UnitOfWork)
InboxHandler = Callable[[Sequence[Contract], U], Awaitable[None]]
BatchParser = Callable[[tuple[Record, ...]], Awaitable[KafkaMessage]]

# The broker accepts records up to its message.max.bytes (1 MiB by default); a dead letter
# adds its reason headers to a record the broker accepted, so its body may no longer fit.
# Bodies above this size are replaced by a reference to the original record.
DEAD_LETTER_MAX_BODY = 512 * 1024
MAX_REQUEST_SIZE = 2 * 1024 * 1024
#: Records of a fetched batch at most, applied in one transaction. Catching up, 2,000 per
#: batch folded 29,500 / 30,200 loyalty events/s against 26,600 / 27,100 with 1,000
#: (alternating runs); a steady load's batches are far smaller.
BATCH_RECORDS = 2000
#: Records decoded between two yields to the event loop (`InboxConsumer.decode`).
DECODE_SLICE = 50
#: Links of a batch's span to its messages' trace contexts, at most (OTel's default limit).
MAX_LINKS = 128


class Rejected(Exception):
    """Raised by a handler for a message that can never be processed (-> dead letters)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Delivery(NamedTuple):
    """One decoded message and the record it came in (read once, at decoding; a tuple,
    the cheapest object to make once per event)."""

    message: Contract
    cloud_event: CloudEvent
    record: Record
    #: CloudEvents: `source` + `id` identify an event; one id from two sources is two.
    inbox_key: str

    @property
    def traceparent(self) -> str | None:
        return self.cloud_event.traceparent or None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: str


Publish = Callable[[Sequence[OutgoingRecord]], Awaitable[None]]


class Decoded(NamedTuple):
    """A batch as `InboxConsumer.decode` read it."""

    deliveries: list[Delivery]
    dead: list[DeadLetter]

    @property
    def size(self) -> int:
        """Records in the batch: each is a delivery or a dead letter."""
        return len(self.deliveries) + len(self.dead)


@dataclass(frozen=True, slots=True)
class Counts:
    applied: int
    duplicates: int


class InboxConsumer(Generic[U]):
    """Applies fetched batches through the inbox; free of FastStream so tests can drive it."""

    def __init__(
        self,
        name: str,
        handler: InboxHandler[U],
        transactions: Transactions[U],
        publish: Publish,
        dead_letter_topic: str,
        inbox: bool = True,
    ) -> None:
        self.name = name
        self._inbox = inbox
        self._handler = handler
        self._transactions = transactions
        self._publish = publish
        self.dead_letter_topic = dead_letter_topic
        self.applied = 0
        self.duplicates = 0
        self.dead_lettered = 0

    async def process(self, records: Sequence[Record]) -> None:
        """Apply one batch: effects and inbox committed, dead letters published."""
        await self.apply(await self.decode(records))

    async def decode(self, records: Sequence[Record]) -> Decoded:
        """The batch's deliveries and dead letters, decoded in slices with a yield to the
        event loop between them (so a batch in flight goes on meanwhile: `batches`)."""
        deliveries, dead = decode_records(records[:DECODE_SLICE])
        for first in range(DECODE_SLICE, len(records), DECODE_SLICE):
            await asyncio.sleep(0)
            more, more_dead = decode_records(records[first : first + DECODE_SLICE])
            deliveries += more
            dead += more_dead
        return Decoded(deliveries, dead)

    async def apply(self, decoded: Decoded) -> None:
        """Effects and inbox committed, dead letters published."""
        deliveries, dead = decoded
        size = decoded.size
        if not size:
            return
        tracing = tracer(__name__)
        links, omitted = trace_links(
            [d.traceparent for d in deliveries] + [traceparent_of(x.record) for x in dead]
        )
        attributes = self._attributes(size)
        if omitted:
            attributes["messaging.batch.links_omitted"] = omitted
        # A root span: the batch belongs to no one trace; it links to all of them.
        span = tracing.start_as_current_span(
            f"consume {self.name}",
            context=Context(),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        with span as current, BATCH_SECONDS.labels(self.name).time():
            try:
                dead = dead + await self._apply(deliveries, tracing)
                await self._dead_letter(dead)
            except Exception as exc:
                _failed(current, exc)
                raise

    async def _apply(self, deliveries: list[Delivery], tracing: trace.Tracer) -> list[DeadLetter]:
        """The batch in one transaction; when one message cannot be applied, one by one."""
        if not deliveries:
            return []
        try:
            self._count(
                await self._transactions.run(
                    functools.partial(self._apply_fresh, tracing, deliveries)
                )
            )
            return []
        except (Rejected, Unstorable):
            log.warning("batch_refused_applying_one_by_one", consumer=self.name)
        dead: list[DeadLetter] = []
        for delivery in deliveries:
            try:
                self._count(
                    await self._transactions.run(
                        functools.partial(self._apply_fresh, tracing, [delivery])
                    )
                )
            except (Rejected, Unstorable) as refused:
                # Not remembered in the inbox: replayed from the dead letters once its cause
                # is mended, it must still apply.
                dead.append(DeadLetter(delivery.record, refused.reason))
        return dead

    async def _apply_fresh(
        self, tracing: trace.Tracer, deliveries: list[Delivery], uow: U
    ) -> Counts:
        fresh = await self._remember(uow, deliveries)
        if fresh:
            await self._handle(tracing, fresh, uow)
        return Counts(applied=len(fresh), duplicates=len(deliveries) - len(fresh))

    async def _handle(self, tracing: trace.Tracer, fresh: list[Delivery], uow: U) -> None:
        """The handler, once, on the batch's fresh messages: under a span of their one
        trace context when they share one, else under the batch's span (module text)."""
        with tracing.start_as_current_span(
            f"process {self.name}",
            context=shared_context(fresh),
            kind=SpanKind.CONSUMER,
            attributes=self._attributes(len(fresh)),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self._handler([d.message for d in fresh], uow)
            except Exception as exc:
                _failed(span, exc)
                raise

    def _attributes(self, count: int) -> dict[str, str | int]:
        return {
            "messaging.system": "kafka",
            "messaging.consumer.group.name": self.name,
            "messaging.batch.message_count": count,
        }

    def _count(self, counts: Counts) -> None:
        """Counted once the transaction committed: a retried one is not counted twice."""
        self.applied += counts.applied
        self.duplicates += counts.duplicates
        CONSUMED.labels(self.name, "applied").inc(counts.applied)
        CONSUMED.labels(self.name, "duplicate").inc(counts.duplicates)

    async def _remember(self, uow: U, deliveries: list[Delivery]) -> list[Delivery]:
        if not self._inbox:
            return deliveries
        fresh_keys = await uow.inbox.remember(self.name, [d.inbox_key for d in deliveries])
        fresh: list[Delivery] = []
        for delivery in deliveries:
            if delivery.inbox_key in fresh_keys:
                fresh_keys.discard(delivery.inbox_key)  # the first of a repeated key only
                fresh.append(delivery)
        return fresh

    async def _dead_letter(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        topic = self.dead_letter_topic
        await self._publish([dead_letter_record(topic, self.name, d) for d in dead])
        self.dead_lettered += len(dead)
        CONSUMED.labels(self.name, "dead_lettered").inc(len(dead))
        for letter in dead:
            log.warning(
                "dead_lettered",
                consumer=self.name,
                topic=letter.record.topic,
                partition=letter.record.partition,
                offset=letter.record.offset,
                reason=letter.reason,
            )


def decode_records(records: Sequence[Record]) -> tuple[list[Delivery], list[DeadLetter]]:
    deliveries: list[Delivery] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            cloud_event = from_kafka(record.headers, record.value)
            message = decode(cloud_event)
        except InvalidMessage as invalid:
            dead.append(DeadLetter(record, invalid.reason))
            continue
        key = f"{cloud_event.source}#{cloud_event.id}"
        deliveries.append(Delivery(message, cloud_event, record, key))
    return deliveries, dead


def traceparent_of(record: Record) -> str | None:
    for key, value in record.headers or ():
        if key == "traceparent" and value:
            return bytes(value).decode("latin-1")
    return None


def shared_context(deliveries: Sequence[Delivery]) -> Context | None:
    """The trace context that every one of `deliveries` carries, if they share one (with
    its `tracestate`); None - the current span's - when they carry several, or none."""
    first = deliveries[0].traceparent
    if first is None or any(d.traceparent != first for d in deliveries):
        return None
    context = context_from_headers(deliveries[0].record.headers)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def trace_links(
    traceparents: Iterable[str | None], limit: int = MAX_LINKS
) -> tuple[list[Link], int]:
    """One link to each distinct valid `traceparent`, in order, at most `limit`; and how
    many distinct values were left out once the limit was reached (those are not parsed:
    what a batch pays for its links stays bounded however many traces it carries)."""
    links: list[Link] = []
    seen: set[str] = set()
    omitted = 0
    for traceparent in traceparents:
        if traceparent is None or traceparent in seen:
            continue
        seen.add(traceparent)
        if len(links) == limit:
            omitted += 1
            continue
        context = link_context(traceparent)
        if context is not None:
            links.append(Link(context))
    return links, omitted


# The W3C format as OpenTelemetry's TraceContextTextMapPropagator reads it.
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_TRACEPARENT_MAX_LENGTH = 512
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


def link_context(traceparent: str) -> SpanContext | None:
    """The span context a link to `traceparent` points at, None when the value is not a
    valid one: what `context_from_traceparent` (OpenTelemetry's propagator) yields for it,
    read without building a context and a span around it (up to MAX_LINKS per batch)."""
    if len(traceparent) > _TRACEPARENT_MAX_LENGTH:
        return None
    match = _TRACEPARENT.match(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID or version == "ff":
        return None
    if version == "00" and rest:
        return None
    return SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16))
    )


def _failed(span: trace.Span, exc: Exception) -> None:
    """Mark a span failed with the exception's type only: its message may quote input."""
    if span.is_recording():
        span.set_attribute("exception.type", type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR))


def dead_letter_record(topic: str, consumer: str, letter: DeadLetter) -> OutgoingRecord:
    record = letter.record
    value = record.value or b""
    headers = [
        (k, b"" if v is None else bytes(v))  # Kafka allows a header without a value
        for k, v in record.headers or ()
        if not k.startswith("x-dlq-")
    ]
    headers += [
        ("x-dlq-reason", letter.reason.encode()),
        ("x-dlq-consumer", consumer.encode()),
        ("x-dlq-original-topic", record.topic.encode()),
        ("x-dlq-original-partition", str(record.partition).encode()),
        ("x-dlq-original-offset", str(record.offset).encode()),
        ("x-dlq-at", datetime.now(UTC).isoformat().encode()),
    ]
    if len(value) > DEAD_LETTER_MAX_BODY:
        digest = hashlib.sha256(value).hexdigest()
        headers.append(("x-dlq-body-omitted", f"{len(value)} bytes, sha256 {digest}".encode()))
        value = b""
    key = record.key.decode("utf-8", "replace") if record.key else ""
    return OutgoingRecord(topic, key, value, headers)


class EventStream(Generic[U]):
    """A service's `KafkaBroker`: inbox subscribers in, the outbox relay's producer out."""

    def __init__(self, settings: ServiceSettings, transactions: Transactions[U]) -> None:
        self._settings = settings
        self._transactions = transactions
        self.broker = KafkaBroker(
            servers(settings.kafka_bootstrap),
            client_id=f"{settings.service_name}-{instance_id(settings)}",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
            max_request_size=MAX_REQUEST_SIZE,
            request_timeout_ms=30_000,
            retry_backoff_ms=200,
            description=f"Events that the {settings.service_name} service consumes.",
            logger=get_logger("faststream"),
            log_level=logging.DEBUG,  # "Received"/"Processed" per batch: debug, not info
        )
        self.consumers: list[InboxConsumer[U]] = []
        self._held: list[Transactions[U]] = []
        self._batch_loops: list[BatchLoop[Decoded]] = []
        self._topics: list[str] = []
        #: Set once the topics exist and the broker started (the lag monitor waits for it).
        self.started = asyncio.Event()

    def topic(self, name: str) -> str:
        return self._settings.topic_prefix + name

    def subscriber(
        self, group: str, *topics: str, inbox: bool = True
    ) -> Callable[[InboxHandler[U]], InboxHandler[U]]:
        """Register `handler` as consumer group `group` of `topics` (unprefixed names).

        `inbox=False` hands every delivery to the handler, repeats included: for a handler
        whose own state decides what "the same message" is (an intake that must refuse a
        reused id with a different body rather than drop it unseen).
        """

        def register(handler: InboxHandler[U]) -> InboxHandler[U]:
            names = [self.topic(t) for t in topics]
            members = range(self._settings.kafka_consumers_per_group)
            consumers = [self._member(group, names, handler, inbox, m) for m in members]
            self._topics += [*names, consumers[0].dead_letter_topic]
            return handler

        return register

    def _member(
        self, group: str, topics: list[str], handler: InboxHandler[U], inbox: bool, member: int
    ) -> InboxConsumer[U]:
        """One member of consumer group `group` in this process (`kafka_consumers_per_group`):
        a FastStream subscriber of its own, with its own static instance id."""
        group_id = self.topic(group)
        # One connection kept for the member's batches (given back when idle).
        transactions = held(self._transactions)
        self._held.append(transactions)
        consumer = InboxConsumer(
            group_id, handler, transactions, self.publish,
            self.topic(dead_letter_topic(group)), inbox,
        )  # fmt: skip
        self.consumers.append(consumer)
        suffix = f"-{member}" if member else ""  # the first keeps the id it always had
        subscriber = self.broker.subscriber(
            *topics,
            batch=True,
            group_id=group_id,
            group_instance_id=f"{group_id}-{instance_id(self._settings)}{suffix}",
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            isolation_level="read_committed",
            max_records=BATCH_RECORDS,
            # An empty fetch sleeps this long again in FastStream's loop: short, so
            # an event arriving after a quiet spell waits at most ~50 ms longer.
            batch_timeout_ms=50,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=self._settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=3_000,
            parser=_parse_batch,
            decoder=_raw_records,
            title=f"{group_id}:consume",
            description=handler.__doc__,
        )
        subscriber(self._batch_loop(consumer))
        return consumer

    def _batch_loop(self, consumer: InboxConsumer[U]) -> Callable[[Any], Awaitable[None]]:
        loop = BatchLoop(consumer)
        self._batch_loops.append(loop)

        async def consume(body: Any) -> None:
            await loop(body)

        consume.__name__ = f"consume_{consumer.name}"  # FastStream names the handler by it
        return consume

    async def start(self) -> None:
        await ensure_topics(
            self._settings.kafka_bootstrap, self._topics, create=self._settings.kafka_create_topics
        )
        await self.broker.start()
        self.started.set()

    async def close(self) -> None:
        self.started.clear()
        for loop in self._batch_loops:
            await loop.drain()
        await self.broker.stop()
        for transactions in self._held:
            await release_held(transactions)

    def producer(self) -> AIOKafkaProducer:
        """The broker's idempotent producer (acks=all). Records are sent as bytes with
        their headers unchanged, which FastStream's text-header `publish` cannot do.

        Before `start` (the relay's loop may begin first) or after `close` this raises a
        `KafkaError`, as an unreachable broker would: the relay backs off and tries again.
        """
        fast_producer = self.broker.config.producer
        if not isinstance(fast_producer, AioKafkaFastProducerImpl) or not fast_producer:
            raise KafkaConnectionError("the stream's broker is not connected")
        producer: AIOKafkaProducer = fast_producer._producer.producer
        return producer

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Send in order on the one idempotent producer; return when all are acknowledged."""
        await (await self.send(records))

    async def send(self, records: Sequence[OutgoingRecord]) -> Awaitable[object]:
        """Enqueue in order on the one idempotent producer; the result completes when the
        broker acknowledged every record (the outbox relay pipelines its rounds on it)."""
        if isinstance(self.broker.config.producer, FakeProducer):
            await self._publish_in_memory(records)
            return _done()
        return await send_all(self.producer(), records)

    async def _publish_in_memory(self, records: Sequence[OutgoingRecord]) -> None:
        """Under FastStream's `TestKafkaBroker` (unit tests): to its subscribers, with the
        headers as text, the only kind its in-memory producer carries."""
        for r in records:
            headers = {k: v.decode("utf-8", "replace") for k, v in r.headers}
            await self.broker.publish(r.value, r.topic, key=r.key.encode(), headers=headers)


def _done() -> asyncio.Future[object]:
    done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def instance_id(settings: ServiceSettings) -> str:
    """Stable across restarts of one instance, different between instances at once."""
    return settings.instance_id or socket.gethostname()


async def _parse_batch(records: Sequence[Record], parse: BatchParser) -> KafkaMessage:
    """FastStream's message for a batch, without FastStream reading the records.

    FastStream's batch parser turns every header of every record into text: one header
    that is not UTF-8, or has no value, raises, and FastStream then drops the whole batch
    without a trace (nothing dead-lettered, the next commit moves past it). The inbox
    consumer reads the records itself and dead-letters such a record with its reason, so
    only the first record, without its headers, is parsed (which binds the message to
    the consumer that commits and rewinds), and the message carries the batch as it came.
    """
    message = await parse((dataclasses.replace(records[0], headers=[]),))
    message.raw_message = tuple(records)
    return message


async def _raw_records(message: KafkaMessage) -> Any:
    """The records are decoded by the inbox consumer itself, once: the handler's argument
    is the message itself. (Asking FastStream to inject it - a parameter annotated
    `KafkaMessage` - costs a hop to a worker thread per batch: its context lookup is
    synchronous, and FastStream's dependency injection runs such calls in a thread.)"""
    return message
