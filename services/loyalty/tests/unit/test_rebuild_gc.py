"""OPS-3 rebuild: the collector runs less often during a replay, and only then."""

from __future__ import annotations

import gc

import pytest
from loyalty.entrypoints.rebuild import REPLAY_GC_THRESHOLD, _fewer_collections


def test_ops3_a_replay_raises_the_collectors_threshold_and_restores_it_even_on_failure():
    before = gc.get_threshold()
    with _fewer_collections():
        assert gc.get_threshold() == (REPLAY_GC_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), _fewer_collections():
        raise RuntimeError("the replay failed")
    assert gc.get_threshold() == before
    assert gc.isenabled()
