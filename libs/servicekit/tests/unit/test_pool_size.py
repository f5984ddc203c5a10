"""A service whose database pool cannot hold what its event side keeps refuses to start:
otherwise the relay waits forever for a connection it never gets."""

from __future__ import annotations

import pytest
from servicekit.outbox import RELAY_CONNECTIONS
from servicekit.runtime import PoolTooSmallError, check_pool_size


def test_a_pool_with_one_connection_beyond_what_is_kept_is_enough() -> None:
    check_pool_size(pool_max=RELAY_CONNECTIONS + 2 + 1, kept=RELAY_CONNECTIONS + 2)


def test_a_pool_no_larger_than_what_the_relay_and_subscribers_keep_is_refused() -> None:
    with pytest.raises(PoolTooSmallError, match=r"POOL_MAX is 4; .* keeps 4 .* at least 5"):
        check_pool_size(pool_max=4, kept=RELAY_CONNECTIONS + 1)
