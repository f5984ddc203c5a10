"""Committed policy states, shared by a service's transactions (both adapters)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from contracts.domain.policy import PolicyState


class PolicyStates:
    """Policy states folded from committed events, shared by a service's transactions;
    the least recently used are dropped past `size`.

    A committed event is never changed or deleted, so a state folded from committed
    events stays the policy's state at its version for good: a reader folds only the
    events after it (`load_many`), instead of the whole stream again. A state that
    includes events of a transaction not yet committed is never kept: what a
    transaction decided is kept through its unit of work's `after_commit`, so only once
    it committed (`Policies.keep_when_committed`).

    It lives outside any transaction: an in-memory unit of work rolled back does not
    copy it back (as a PostgreSQL rollback does not touch it either).
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._states: OrderedDict[str, PolicyState] = OrderedDict()

    def __deepcopy__(self, memo: dict[int, Any]) -> PolicyStates:
        return self

    def get(self, policy_id: str) -> PolicyState | None:
        state = self._states.get(policy_id)
        if state is not None:
            self._states.move_to_end(policy_id)
        return state

    def keep(self, state: PolicyState) -> None:
        known = self._states.get(state.policy_id)
        if known is None or known.version < state.version:
            self._states[state.policy_id] = state
        self._states.move_to_end(state.policy_id)
        while len(self._states) > self._size:
            self._states.popitem(last=False)

    def keep_all(self, states: Iterable[PolicyState]) -> None:
        for state in states:
            self.keep(state)

    def snapshot(self) -> dict[str, PolicyState]:
        """What is kept now (for tests: a rolled-back transaction leaves it as it was)."""
        return dict(self._states)
