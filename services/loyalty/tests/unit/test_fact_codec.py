"""LOY-12: a fact stored and read back is the same fact (the facts table's JSON payload),
and a fact that cannot be written as JSON is refused as unstorable, never a crash."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from loyalty.adapters.postgres import FACT_TYPES, PostgresFacts, decode, encode
from loyalty.domain import facts as f
from servicekit.unit_of_work import Unstorable

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
EVERY_KIND: list[f.Fact] = [
    f.CustomerRegistered("e1", AT, "c1", date(1980, 2, 29), "DE", natural_person=True),
    f.Enrolled("e2", AT, "c1"),
    f.PolicyIssued("e3", AT, "P1", "motor", True, ("c1", "c2"), date(2026, 1, 1)),
    f.PolicyholdersChanged("e4", AT, "P1", ("c2",), date(2026, 2, 1)),
    f.PremiumPaid("e5", AT, "pay-1", "P1", "motor", True, 12_345, ("c1", "c2")),
    f.PolicyCancelled("e6", AT, "P1", date(2026, 12, 31)),
    f.EmailInsteadOfLetterActivated("e7", AT, "c1"),
    f.EmailInsteadOfLetterDeactivated("e8", AT, "c1"),
    f.AccountCancelled("e9", AT, "c1"),
    f.ServiceUsed("e10", AT, "c1", "claim_reported_online"),
    f.RewardRedeemed("e11", AT, "c1", "red-1", "cinema", 1500, 250),
]


def test_loy12_every_kind_of_fact_reads_back_as_it_was_stored() -> None:
    assert {type(fact).__name__ for fact in EVERY_KIND} == set(FACT_TYPES)
    for fact in EVERY_KIND:
        assert decode(type(fact).__name__, fact.event_id, AT, encode(fact)) == fact


class _Refusing:
    async def execute(self, *args: Any) -> None:
        raise AssertionError("nothing unstorable may reach the database")


async def test_a_fact_with_text_json_cannot_carry_is_unstorable() -> None:
    broken = f.ServiceUsed("e12", AT, "c1", "lone \ud800 surrogate")
    with pytest.raises(Unstorable):
        await PostgresFacts(_Refusing()).add([("c1", broken)])  # type: ignore[arg-type]
