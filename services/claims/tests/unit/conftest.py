from __future__ import annotations

import pytest
from claims_world import World, policy_issued


@pytest.fixture
async def world() -> World:
    w = World()
    await w.policies(policy_issued("P-1", ("C-1",)))
    return w
