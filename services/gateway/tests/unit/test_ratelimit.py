"""GW-1: rate limits per client address and per account (decisions on MemoryStorage)."""

from __future__ import annotations

import asyncio
import time

from gateway.adapters.ratelimit import RateLimits, memory_storage


def limits(**kw: str) -> RateLimits:
    values = {
        "per_address": "3/minute",
        "per_account": "2/minute",
        "public_per_address": "2/minute",
    }
    return RateLimits(memory_storage(), **(values | kw))


async def test_gw1_an_address_gets_its_limit_then_is_refused_with_a_retry_after() -> None:
    limiter = limits()
    decisions = [await limiter.admit_address("198.51.100.1", public=False) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    refused = decisions[-1]
    assert refused.limit == "address"
    assert 1 <= refused.retry_after_seconds <= 60


async def test_gw1_addresses_are_limited_independently() -> None:
    limiter = limits(per_address="1/minute")
    assert (await limiter.admit_address("198.51.100.1", public=False)).allowed
    assert not (await limiter.admit_address("198.51.100.1", public=False)).allowed
    assert (await limiter.admit_address("198.51.100.2", public=False)).allowed


async def test_gw1_routes_without_a_token_have_a_stricter_limit_per_address() -> None:
    limiter = limits()
    public = [await limiter.admit_address("198.51.100.1", public=True) for _ in range(3)]
    assert [d.allowed for d in public] == [True, True, False]
    assert public[-1].limit == "public-address"
    # The authenticated routes of that address still have their own remaining budget.
    assert (await limiter.admit_address("198.51.100.1", public=False)).allowed


async def test_gw1_an_account_is_limited_whatever_address_it_comes_from() -> None:
    limiter = limits()
    assert (await limiter.admit_account("anna")).allowed
    assert (await limiter.admit_account("anna")).allowed
    refused = await limiter.admit_account("anna")
    assert (refused.allowed, refused.limit) == (False, "account")
    assert (await limiter.admit_account("ben")).allowed


async def test_gw1_the_window_moves_so_the_budget_comes_back() -> None:
    limiter = limits(per_account="1/second")
    assert (await limiter.admit_account("anna")).allowed
    refused = await limiter.admit_account("anna")
    assert refused == refused.__class__(False, "account", 1)
    deadline = time.monotonic() + 60  # a guard against a hang, not a speed limit
    while not (await limiter.admit_account("anna")).allowed:
        assert time.monotonic() < deadline, "the one-second window never moved on"
        await asyncio.sleep(0.05)


async def test_gw1_instances_sharing_a_storage_share_the_limit() -> None:
    storage = memory_storage()
    one = RateLimits(storage, per_address="2/minute", per_account="9/minute",
                     public_per_address="9/minute")  # fmt: skip
    two = RateLimits(storage, per_address="2/minute", per_account="9/minute",
                     public_per_address="9/minute")  # fmt: skip
    assert (await one.admit_address("198.51.100.1", public=False)).allowed
    assert (await two.admit_address("198.51.100.1", public=False)).allowed
    assert not (await one.admit_address("198.51.100.1", public=False)).allowed
