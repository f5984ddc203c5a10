"""Persistent SMTP sessions to the relay host, a bounded pool of them (NT-1).

Opening an SMTP session costs a TCP (and TLS) handshake, the greeting, EHLO, possibly
STARTTLS + EHLO again and AUTH: several round trips before the first message. The pool
keeps up to `size` sessions to the one relay it is made for and hands each to one sender
at a time, so the channel pays that once per session instead of once per message.

- Bounded: at most `size` sessions exist; a sender waits for a free one. Waiting and
  connecting share one deadline (`timeout`), so a send stays within twice the channel
  timeout (the lease rule of `NotifierSettings`).
- Idle sessions are reused last-in first-out. One idle for longer than `idle_seconds` is
  quit and replaced (relays drop idle sessions: Postfix after 300 s), and one that has
  carried `max_messages` messages is retired (relays cap messages per session).
- A session is given back only after a clean exchange or a reply the server answered
  (a refused recipient, a refused message: aiosmtplib resets the envelope). After a
  transport error, a timeout or a cancellation it is closed, never reused.
- `close()` (service shutdown) quits the idle sessions; sessions in use are closed when
  they come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiosmtplib


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """How to open one session to the relay (what `aiosmtplib.SMTP` needs)."""

    host: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    validate_certs: bool = True
    cert_bundle: str | None = None
    tls_context: ssl.SSLContext | None = None
    timeout: float = 30.0


@dataclass(slots=True)
class Session:
    """A connected client and what the pool knows about it."""

    client: aiosmtplib.SMTP
    messages: int = 0
    idle_since: float = 0.0
    #: True when it came from the idle list (it may have been dropped by the server).
    reused: bool = False


class SessionPoolClosed(Exception):
    """The pool was closed (the service is stopping)."""


class SmtpSessionPool:
    def __init__(
        self,
        endpoint: SmtpEndpoint,
        *,
        size: int = 8,
        idle_seconds: float = 60.0,
        max_messages: int = 100,
    ) -> None:
        if size < 1:
            raise ValueError("an SMTP pool needs at least one session")
        self.endpoint = endpoint
        self.size = size
        self.idle_seconds = idle_seconds
        self.max_messages = max_messages
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Session] = []
        self._closed = False
        self._quitting: set[asyncio.Task[None]] = set()
        #: Sessions opened so far (operators' and tests' view of the reuse).
        self.opened = 0

    @property
    def idle(self) -> int:
        return len(self._idle)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """A connected session for one exchange; back to the pool afterwards if healthy."""
        if self._closed:
            raise SessionPoolClosed
        async with asyncio.timeout(self.endpoint.timeout):
            await self._slots.acquire()
            try:
                session = self._take_idle() or await self._open()
            except BaseException:
                self._slots.release()
                raise
        healthy = False
        try:
            yield session
            healthy = True
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as refused:
            # The server answered (and aiosmtplib reset the envelope): still usable, unless
            # the answer was 421 (the server closes the session).
            healthy = _answered(refused)
            raise
        finally:
            self._give_back(session, healthy)
            self._slots.release()

    async def reopen(self, session: Session) -> None:
        """Replace a reused session the server had dropped by a fresh connection."""
        _discard(session.client)
        fresh = await self._open()
        session.client, session.messages, session.reused = fresh.client, 0, False

    async def close(self) -> None:
        """Quit the idle sessions; sessions in use are closed when they are given back."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(s.client) for s in idle), *self._quitting)

    def _take_idle(self) -> Session | None:
        now = time.monotonic()
        while self._idle:
            session = self._idle.pop()
            if now - session.idle_since <= self.idle_seconds and session.client.is_connected:
                session.reused = True
                return session
            _discard(session.client)
        return None

    async def _open(self) -> Session:
        e = self.endpoint
        client = aiosmtplib.SMTP(
            hostname=e.host,
            port=e.port,
            username=e.username,
            password=e.password,
            use_tls=e.use_tls,
            start_tls=e.start_tls,
            validate_certs=e.validate_certs,
            cert_bundle=e.cert_bundle,
            tls_context=e.tls_context,
            timeout=e.timeout,
        )
        try:
            await client.connect()
        except BaseException:
            _discard(client)
            raise
        self.opened += 1
        return Session(client)

    def _give_back(self, session: Session, healthy: bool) -> None:
        reusable = (
            healthy
            and not self._closed
            and session.client.is_connected
            and session.messages < self.max_messages
        )
        if not reusable:
            if healthy and session.client.is_connected:
                # Retired after max_messages or at shutdown: say goodbye politely.
                task = asyncio.get_running_loop().create_task(_quit(session.client))
                self._quitting.add(task)
                task.add_done_callback(self._quitting.discard)
            else:
                _discard(session.client)
            return
        session.idle_since = time.monotonic()
        self._idle.append(session)


def _answered(error: aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPResponseException) -> bool:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(r.code != 421 for r in error.recipients)
    return error.code != 421


def _discard(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        client.close()


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        async with asyncio.timeout(5):
            await client.quit()
    except (aiosmtplib.SMTPException, TimeoutError, OSError):
        _discard(client)
