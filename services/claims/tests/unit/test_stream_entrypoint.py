"""The stream entrypoint on FastStream's in-memory test broker: contracts' policy events
and claims-handling commands published as CloudEvents reach the handlers through
servicekit's inbox subscribers (unit test; the real broker is in tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime

from claims.adapters.memory import InMemoryClaimsUnitOfWork
from claims.config import ClaimsSettings
from claims.entrypoints.stream import HANDLING_GROUP, POLICIES_GROUP, subscribe
from claims_world import World, policy_issued
from contracts_schemas import topic_of
from contracts_schemas.base import Contract
from contracts_schemas.claims import (
    ClaimStatus,
    ClaimStatusChanged,
    ClaimTransition,
    ClaimTransitionRequested,
)
from contracts_schemas.cloudevents import encode
from faststream.kafka import TestKafkaBroker
from servicekit.stream import EventStream

PREFIX = "unit."


def stream_of(world: World) -> EventStream[InMemoryClaimsUnitOfWork]:
    settings = ClaimsSettings(topic_prefix=PREFIX, instance_id="unit-1")
    stream = EventStream(settings, world.transactions)
    subscribe(stream, world.handlers)
    return stream


async def publish(broker: TestKafkaBroker, *messages: Contract, source: str) -> None:
    for message in messages:
        cloud_event = encode(message, source)
        await broker.publish(
            cloud_event.data,
            topic=PREFIX + topic_of(message),
            key=(cloud_event.subject or cloud_event.id).encode(),
            headers={name: value.decode() for name, value in cloud_event.headers()},
        )


def command(claim_number: str, transition: ClaimTransition, message_id: str) -> Contract:
    return ClaimTransitionRequested(
        message_id=message_id, source_system="claims-handling",
        occurred_at=datetime(2026, 3, 3, 10, tzinfo=UTC), policy_number="NR-P-9",
        claim_number=claim_number, transition=transition,
    )  # fmt: skip


def test_the_subscribers_are_the_policy_and_the_handling_groups() -> None:
    stream = stream_of(World())
    assert [c.name for c in stream.consumers] == [PREFIX + POLICIES_GROUP, PREFIX + HANDLING_GROUP]


async def test_ct3_cl4_policies_and_handling_commands_arrive_once_illegal_ones_dead_lettered() -> (
    None
):
    world = World()
    stream = stream_of(world)
    async with TestKafkaBroker(stream.broker) as broker:
        await publish(broker, policy_issued("P-9", ("C-1",)), source="/contracts")
        claim = await world.report(policy="P-9")
        review = command(claim.claim_number, ClaimTransition.START_REVIEW, "m-1")
        await publish(broker, review, review, source="/claims-handling")
        await publish(broker, command(claim.claim_number, ClaimTransition.PAY, "m-2"),
                      source="/claims-handling")  # fmt: skip

    assert "P-9" in world.uow.policies.rows
    changes = world.published(ClaimStatusChanged)
    assert [(e.old_status, e.new_status) for e in changes] == [
        (ClaimStatus.REPORTED, ClaimStatus.IN_REVIEW)
    ]
    policies, handling = stream.consumers
    assert (handling.applied, handling.duplicates, handling.dead_lettered) == (1, 1, 1)
    assert policies.applied == 1
