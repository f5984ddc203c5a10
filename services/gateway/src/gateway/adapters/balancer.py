"""One upstream's instances behind one httpx transport (GW-2): each request goes to the
instance `gateway.domain.balancing` chooses, and to the next one when the first could not
be connected to - or failed after sending and the request may be sent twice.

The clients of the gateway (proxy, OpenAPI documents, the key set) address an upstream by
a name of its own (`http://contracts.upstream/...`); this transport puts the chosen
instance's scheme, host, port and path prefix in its place (a forwarded request keeps the
client's `Host`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
from servicekit.logging import get_logger
from servicekit.metrics import counter

from gateway.domain.balancing import InstanceLoad, choose, may_send_again

log = get_logger(__name__)

INSTANCE_FAILURES = counter(
    "portal_gateway_upstream_instance_failures_total",
    "Requests an upstream instance failed in transport that another instance may take, by "
    "upstream and reason: unreachable (refused, or no connection in time) | broken (failed "
    "after sending a request that may be sent twice)",
    ["upstream", "reason"],
)
# Nothing was sent: the instance never took the connection.
_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)
# Sent (or partly sent), then the connection broke before an answer began.
_BROKEN = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def address(name: str) -> str:
    """The base URL the gateway's clients use for upstream `name`."""
    return f"http://{name}.upstream"


class _Replay(httpx.AsyncByteStream):
    """A request body that says whether any of it was read (then, unless it is bytes in
    memory, it cannot be sent to another instance)."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream
        self.started = False

    @property
    def replayable(self) -> bool:
        return not self.started or isinstance(self._stream, httpx.ByteStream)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Counted(httpx.AsyncByteStream):
    """An answer's body; the instance's request is in flight until it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, done: Callable[[], None]) -> None:
        self._stream = stream
        self._done: Callable[[], None] | None = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


class BalancedTransport(httpx.AsyncBaseTransport):
    """`urls`: the instances' base URLs; `transport_for(url)`: the transport to one of
    them (a pooled `httpx.AsyncHTTPTransport`; tests pass fakes)."""

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        transport_for: Callable[[str], httpx.AsyncBaseTransport],
        cooldown_seconds: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError(f"upstream {name} has no instance")
        self.name = name
        self.urls = [httpx.URL(url.rstrip("/")) for url in urls]
        self._transports = [transport_for(str(url)) for url in self.urls]
        self.loads = [InstanceLoad() for _ in self.urls]
        self._cooldown = cooldown_seconds
        self._now = now
        self._turns = itertools.count()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        body = _Replay(request.stream)
        again = may_send_again(request.method, request.headers.keys())
        turn, tried = next(self._turns), list[int]()
        failure: httpx.TransportError | None = None
        while True:
            index = choose(self.loads, tried, self._now(), turn)
            if failure is not None and (index is None or not body.replayable):
                raise failure
            assert index is not None  # the first choice always finds an instance
            tried.append(index)
            try:
                return await self._send(index, request, body)
            except _UNREACHABLE as exc:
                self.loads[index].resting_until = self._now() + self._cooldown
                failure = self._failed(index, exc)
            except _BROKEN as exc:
                if not again:
                    raise
                failure = self._failed(index, exc)

    async def _send(self, index: int, request: httpx.Request, body: _Replay) -> httpx.Response:
        load = self.loads[index]
        base = self.urls[index]
        url = base.copy_with(raw_path=base.raw_path.rstrip(b"/") + request.url.raw_path)
        headers = request.headers.copy()
        if headers.get("host") == request.url.netloc.decode("ascii"):
            # Our own call by the upstream's name; a forwarded request keeps the client's.
            headers["Host"] = base.netloc.decode("ascii")
        sent = httpx.Request(
            request.method, url, headers=headers, stream=body, extensions=request.extensions
        )
        load.in_flight += 1
        try:
            answer = await self._transports[index].handle_async_request(sent)
        except BaseException:
            load.in_flight -= 1
            raise
        assert isinstance(answer.stream, httpx.AsyncByteStream)
        return httpx.Response(
            answer.status_code, headers=answer.headers,
            stream=_Counted(answer.stream, lambda: _finished(load)),
            extensions=answer.extensions,
        )  # fmt: skip

    def _failed(self, index: int, exc: httpx.TransportError) -> httpx.TransportError:
        reason = "unreachable" if isinstance(exc, _UNREACHABLE) else "broken"
        log.warning(
            "upstream_instance_failed", upstream=self.name, instance=str(self.urls[index]),
            reason=reason, error=type(exc).__name__,
        )  # fmt: skip
        INSTANCE_FAILURES.labels(self.name, reason).inc()
        return exc

    async def aclose(self) -> None:
        if self._closed:  # the proxy's client and the key set's may share it
            return
        self._closed = True
        for transport in {id(t): t for t in self._transports}.values():
            await transport.aclose()


def _finished(load: InstanceLoad) -> None:
    load.in_flight -= 1
