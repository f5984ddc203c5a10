"""The fold's step builds each new state as `dataclasses.replace` would (CT-1: state is
a pure fold of the policy's events), without replace's per-field cost."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from contracts.domain import policy as p


def test_ct1_a_folded_state_is_the_one_replace_builds(upstream: Any) -> None:
    state = upstream.run(
        None,
        upstream.issued("AS-1", holders=("anna",)),
        upstream.paid("AS-1", payment_id="a"),
        upstream.holders_changed("AS-1", holders=("anna", "ben")),
    )
    paid = upstream.paid("AS-1", payment_id="b")
    [event] = upstream.decide(state, paid)
    after = p.evolve(state, event)
    changes = {"version": 4, "event_ids": state.event_ids | {event.event_id},
               "payments": after.payments}  # fmt: skip
    assert after == replace(state, **changes)
    assert type(after) is p.PolicyState
    cancelled = p.evolve(after, upstream.decide(after, upstream.cancelled("AS-1"))[0])
    assert cancelled.version == 5
    assert cancelled.is_cancelled
    assert cancelled.payments == after.payments
    assert after.version == 4, "the earlier state is unchanged"


def test_ct1_policy_state_has_nothing_replace_would_run_besides_its_fields() -> None:
    """What makes the fold's copy equal to replace: no __post_init__, every field an
    __init__ argument (an InitVar or init=False field would need replace again)."""
    assert not hasattr(p.PolicyState, "__post_init__")
    assert all(f.init for f in fields(p.PolicyState))
    assert len(fields(p.PolicyState)) == len(p.PolicyState.__dataclass_fields__)
