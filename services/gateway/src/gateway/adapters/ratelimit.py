"""Rate limits per client address and per account, in storage every gateway instance
shares (Redis; `MemoryStorage` in unit tests only). Moving windows: at most N requests in
any window of the period, whatever instance took them.

Three limits, all checked on every request they concern:
- per client address, every request (scans of unknown or internal paths count too);
- per client address, stricter, routes without a token (login, registration, recovery);
- per account (the token's subject), every authenticated request, from any address.
A request refused by one limit is not counted by the limits checked after it
(the stricter one first). When the storage cannot be reached the gateway
refuses (503) rather than letting requests through unlimited.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

__all__ = ["Decision", "RateLimits", "Storage", "StorageError", "memory_storage", "redis_storage"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: str = ""  # which limit refused: "address", "public-address" or "account"
    retry_after_seconds: int = 0


ALLOWED = Decision(True)


def redis_storage(url: str) -> Storage:
    """`redis://host:port/db` (the launcher's PORTAL_REDIS_URL), with redis-py's client."""
    uri = url if url.startswith("async+") else "async+" + url
    return RedisStorage(
        uri, implementation="redispy", wrap_exceptions=True,
        socket_timeout=1.0, socket_connect_timeout=1.0,
    )  # fmt: skip


def memory_storage() -> Storage:
    """Unit tests only: not shared between instances."""
    return MemoryStorage()


class RateLimits:
    def __init__(
        self,
        storage: Storage,
        *,
        per_address: str,
        per_account: str,
        public_per_address: str,
        now: Callable[[], float] = time.time,
        namespace: str = "gateway",
    ) -> None:
        self.storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._per_address = parse(per_address)
        self._per_account = parse(per_account)
        self._public = parse(public_per_address)
        self._now = now
        self._namespace = namespace

    async def admit_address(self, address: str, *, public: bool) -> Decision:
        """Raises `StorageError` when the shared storage does not answer."""
        if public:
            decision = await self._hit(self._public, "public-address", address)
            if not decision.allowed:
                return decision
        return await self._hit(self._per_address, "address", address)

    async def admit_account(self, subject: str) -> Decision:
        return await self._hit(self._per_account, "account", subject)

    async def ready(self) -> None:
        if not await self.storage.check():
            raise StorageError(ConnectionError("rate-limit storage does not answer"))

    async def _hit(self, item: RateLimitItem, kind: str, who: str) -> Decision:
        if await self._limiter.hit(item, self._namespace, kind, who):
            return ALLOWED
        stats = await self._limiter.get_window_stats(item, self._namespace, kind, who)
        wait = max(1, math.ceil(stats.reset_time - self._now()))
        return Decision(False, kind, wait)
