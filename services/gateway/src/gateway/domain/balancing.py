"""Which instance of an upstream takes a request, and when a failed request may go to
another one (GW-2). Pure: no I/O, time is passed in.

- Least in flight: the instance with the fewest requests under way, ties taken in turn
  (round robin among equals). A slow or stopped instance collects requests that do not
  finish and so stops being chosen; plain round robin would keep sending it its share.
- An instance that refused a connection or did not accept one in time rests for a short
  cool-down: it is chosen only when every instance rests (then the one resting longest
  ago first). Each request tries every instance at most once.
- Nothing reached an instance that could not be connected to: the request goes to the
  next one whatever its method. A failure after the request was sent (connection reset,
  closed before the answer) goes to the next one only when sending it twice is harmless:
  GET, HEAD, PUT, DELETE, OPTIONS, or a request that carries an `Idempotency-Key`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
IDEMPOTENCY_KEY = "idempotency-key"


def may_send_again(method: str, header_names: Iterable[str]) -> bool:
    """A request that may reach the upstream twice (RFC 9110 section 9.2.2, or the
    client's idempotency key): after a failure past sending, another instance may take it."""
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    return any(name.lower() == IDEMPOTENCY_KEY for name in header_names)


@dataclass(slots=True)
class InstanceLoad:
    """What the balancer knows of one instance."""

    in_flight: int = 0
    resting_until: float = 0.0  # no requests before this moment (after a refused connect)

    def rests(self, now: float) -> bool:
        return now < self.resting_until


def choose(
    instances: Sequence[InstanceLoad], tried: Iterable[int], now: float, turn: int
) -> int | None:
    """The index of the instance to try next, or None when every one was tried.

    `turn` grows by one per request: among instances equally loaded, the one at or after
    `turn` (modulo their number) goes first."""
    count = len(instances)
    done = set(tried)
    order = [(turn + step) % count for step in range(count)]
    left = [index for index in order if index not in done]
    awake = [index for index in left if not instances[index].rests(now)]
    if awake:
        return min(awake, key=lambda index: instances[index].in_flight)
    if left:
        return min(left, key=lambda index: instances[index].resting_until)
    return None
