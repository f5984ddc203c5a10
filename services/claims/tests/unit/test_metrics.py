"""OPS-2: claims by status - the handler on the in-memory unit of work, and the gauge a
refresh round sets (every status, 0 for a status no claim is in)."""

from __future__ import annotations

from claims import commands as c
from claims.entrypoints.metrics import refresh_claims_by_status
from claims_world import World
from contracts_schemas.claims import ClaimStatus
from contracts_schemas.claims import ClaimTransition as T
from prometheus_client import REGISTRY


def gauge(status: ClaimStatus) -> float | None:
    return REGISTRY.get_sample_value("portal_claims", {"status": status.value})


async def test_ops2_claims_are_counted_by_status_every_status_present(world: World) -> None:
    first = await world.report(description="eins")
    await world.report(description="zwei")
    await world.move(first, T.START_REVIEW)

    counted = await world.run(world.handlers.count_by_status, c.CountByStatus())

    assert counted == dict.fromkeys(ClaimStatus, 0) | {
        ClaimStatus.REPORTED: 1,
        ClaimStatus.IN_REVIEW: 1,
    }


async def test_ops2_a_refresh_sets_the_gauge_and_an_emptied_status_goes_back_to_zero(
    world: World,
) -> None:
    claim = await world.report()
    await refresh_claims_by_status(world.transactions, world.handlers)
    assert (gauge(ClaimStatus.REPORTED), gauge(ClaimStatus.IN_REVIEW)) == (1, 0)

    await world.move(claim, T.START_REVIEW)
    await refresh_claims_by_status(world.transactions, world.handlers)

    assert (gauge(ClaimStatus.REPORTED), gauge(ClaimStatus.IN_REVIEW)) == (0, 1)
    assert gauge(ClaimStatus.PAID) == 0
