"""CT-4/NT-3: identity owns the customer's address. A move the policyholder reports to
contracts (`MoveReported` on the policy topic) changes the account's address and the
holder's address on identity's view of their policies, and `AddressChanged` tells the
notifier - once per actual change, through the outbox (the unit of work's events)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from contracts_schemas import identity as ev
from contracts_schemas.common import Carrier, PostalAddress
from contracts_schemas.contracts import MoveReported
from identity import commands as c
from identity.domain.model import Address
from identity_world import PASSWORD, POLICY_ADDRESS, START, World, holder, policy_issued

AVAG = Carrier.ALLIANZ_VERSICHERUNGS_AG
BERLIN = PostalAddress(recipient="Frau Erika Mustermann", street="Lindenallee 5",
                       postal_code="10115", city="Berlin")  # fmt: skip


def move(number: str, to: PostalAddress = BERLIN, version: int = 2, days: int = 1) -> MoveReported:
    """contracts' MoveReported for policy `number` (the holders are the policy's)."""
    return MoveReported(
        event_id=uuid.uuid4(), aggregate_id=f"pol-{number}", aggregate_version=version,
        occurred_at=START + timedelta(days=days), policy_id=f"pol-{number}",
        new_address=to, moved_on=date(2026, 4, 1),
    )  # fmt: skip


def holder_address(world: World, number: str, holder_id: str) -> Address:
    """The holder's address on identity's view of policy `number`."""
    found = world.uow.policies.rows[f"pol-{number}"].holder(holder_id)
    assert found is not None
    return found.address


async def customer_with_policies(world: World, *numbers: str, holder_id: str = "P-20") -> None:
    """Erika, sole holder of `numbers`, registered naming the first (ID-3: her account is
    the holder's id)."""
    await world.run(world.identity.record_policies, [
        policy_issued(n, (holder_id,), AVAG, (holder(holder_id),)) for n in numbers
    ])  # fmt: skip
    await world.run(world.identity.register, c.Register(
        username="erika", password=PASSWORD, first_name="Erika", last_name="Mustermann",
        birth_date=date(1980, 5, 17), address=Address(**POLICY_ADDRESS.model_dump()),
        email="erika@example.org", policy_number=numbers[0],
    ))  # fmt: skip
    assert world.customer_id() == holder_id


async def test_ct4_nt3_a_reported_move_changes_the_customers_address_and_tells_the_notifier(
    world: World,
) -> None:
    await customer_with_policies(world, "HR-20")
    reported = move("HR-20")

    await world.run(world.identity.record_policies, [reported])

    (changed,) = world.published(ev.AddressChanged)
    assert changed.customer_id == changed.aggregate_id == "P-20"
    assert changed.address == BERLIN
    assert changed.occurred_at == world.clock.now()  # identity's clock, as its other events
    account = world.uow.accounts.rows["P-20"]
    assert changed.aggregate_version == account.version  # the account's next event
    assert account.address == Address("Frau Erika Mustermann", "Lindenallee 5", "10115", "Berlin")


async def test_ct4_a_letter_asked_for_after_the_move_goes_to_the_new_address(
    world: World,
) -> None:
    await customer_with_policies(world, "HR-21", holder_id="P-21")
    await world.run(world.identity.record_policies, [move("HR-21")])

    await world.run(
        world.identity.request_activation_letter, c.RequestActivationLetter("P-21", "rebind_mobile")
    )

    assert world.last(ev.ActivationCodeIssued).address == BERLIN


async def test_ct4_nt3_the_same_move_reported_on_each_of_three_policies_is_one_change(
    world: World,
) -> None:
    await customer_with_policies(world, "HR-22", "KFZ-22", "PHV-22", holder_id="P-22")

    await world.run(world.identity.record_policies, [move("HR-22"), move("KFZ-22")])
    await world.run(world.identity.record_policies, [move("PHV-22")])

    (changed,) = world.published(ev.AddressChanged)
    assert changed.address == BERLIN
    assert {holder_address(world, p, "P-22") for p in ("HR-22", "KFZ-22", "PHV-22")} == {
        Address(**BERLIN.model_dump())
    }


async def test_ct4_nt3_a_redelivered_move_changes_nothing(world: World) -> None:
    await customer_with_policies(world, "HR-23", holder_id="P-23")
    reported = move("HR-23")
    await world.run(world.identity.record_policies, [reported])
    before = world.uow.accounts.rows["P-23"].version

    await world.run(world.identity.record_policies, [reported])

    assert len(world.published(ev.AddressChanged)) == 1
    assert world.uow.accounts.rows["P-23"].version == before


async def test_ct4_the_same_address_in_other_capitals_and_spacing_is_no_change(
    world: World,
) -> None:
    await customer_with_policies(world, "HR-24", holder_id="P-24")
    await world.run(world.identity.record_policies, [move("HR-24")])
    shouted = BERLIN.model_copy(update={"street": "LINDENALLEE   5", "city": "berlin"})

    await world.run(world.identity.record_policies, [move("HR-24", shouted, version=3, days=2)])

    assert len(world.published(ev.AddressChanged)) == 1


async def test_ct4_moving_again_is_another_change(world: World) -> None:
    await customer_with_policies(world, "HR-25", holder_id="P-25")
    await world.run(world.identity.record_policies, [move("HR-25")])

    await world.run(
        world.identity.record_policies, [move("HR-25", POLICY_ADDRESS, version=3, days=30)]
    )

    assert [e.address for e in world.published(ev.AddressChanged)] == [BERLIN, POLICY_ADDRESS]


async def test_ct4_a_move_of_a_customer_identity_does_not_know_is_ignored(world: World) -> None:
    """No account for the holder, or a policy identity never saw: nothing happens, and
    nothing is refused (the policy topic is no place for a dead letter about it)."""
    await world.run(world.identity.record_policies,
                    [policy_issued("HR-26", ("P-26",), AVAG, (holder("P-26"),))])  # fmt: skip

    await world.run(world.identity.record_policies, [move("HR-26"), move("HR-UNKNOWN")])

    assert not world.published(ev.AddressChanged)
    assert holder_address(world, "HR-26", "P-26") == Address(**POLICY_ADDRESS.model_dump())


async def test_ct4_a_move_on_a_policy_with_joint_holders_is_ignored(world: World) -> None:
    """The event does not say which of the holders moved: neither address is changed."""
    await customer_with_policies(world, "HR-27", holder_id="P-27")
    await world.run(world.identity.record_policies, [
        policy_issued("GEM-27", ("P-27", "P-28"), AVAG, (holder("P-27"), holder("P-28", "Max"))),
    ])  # fmt: skip

    await world.run(world.identity.record_policies, [move("GEM-27")])

    assert not world.published(ev.AddressChanged)
    assert holder_address(world, "HR-27", "P-27") == Address(**POLICY_ADDRESS.model_dump())
