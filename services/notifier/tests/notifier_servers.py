"""Real servers on 127.0.0.1 with random free ports, started and stopped by the tests: an
SMTP server (aiosmtpd) and an HTTP server standing in for the SMS provider (uvicorn with a
minimal ASGI app) that fails on demand. Shared by the adapter, service and kill tests."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any
from uuid import uuid4

import uvicorn
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from notifier.adapters.email_smtp import SmtpSecurity, SmtpSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


# -------------------------------------------------------------------- SMTP server


class RecordingHandler:
    """Accepts mail; refuses recipients whose local part says so (550/450).

    `rcpt_delay` makes every RCPT TO take that long (a slow relay), so that a stream of
    mail takes long enough to kill the notifier in the middle of it. The delay is before
    the message is transferred: a client that dies during it has sent nothing.
    """

    def __init__(self, rcpt_delay: float = 0.0) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[tuple[str, str]] = []
        self.rcpt_delay = rcpt_delay
        self.arrived = asyncio.Event()
        #: Sends that are in their SMTP transaction right now (inside a delayed RCPT).
        self.mid_transaction = 0

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_delay:
            self.mid_transaction += 1
            try:
                await asyncio.sleep(self.rcpt_delay)
            finally:
                self.mid_transaction -= 1
        if address.startswith("unknown@"):
            return "550 5.1.1 Recipient address rejected: User unknown"
        if address.startswith("busy@"):
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.envelopes.append(envelope)
        self.arrived.set()
        return f"250 2.0.0 Ok: queued as Q{len(self.envelopes)}"

    def messages(self) -> list[EmailMessage]:
        return [parse(envelope) for envelope in self.envelopes]

    def message_ids(self) -> list[str]:
        return [str(message["Message-ID"]) for message in self.messages()]

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = (
            v.decode() if isinstance(v, bytes) else str(v)
            for v in (auth_data.login, auth_data.password)
        )
        self.logins.append((mechanism, login))
        ok = (login, password) == ("notifier", "s3cret-Passw0rd")
        # handled=False: let aiosmtpd answer 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def parse(envelope: Envelope) -> EmailMessage:
    assert isinstance(envelope.original_content, bytes)
    parsed = message_from_bytes(envelope.original_content, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    content: str = body.get_content()  # type: ignore[attr-defined]
    return content


class NoDelaySMTP(SMTP):
    """aiosmtpd writes multi-line replies (EHLO) line by line; with Nagle on, every
    connection then waits ~40 ms for the client's delayed ACK. Real MTAs answer in one
    write, so the stand-in turns Nagle off."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def settings_for(port: int, **overrides: Any) -> SmtpSettings:
    """The e-mail channel's settings for the SMTP server on 127.0.0.1:`port` (no TLS)."""
    defaults: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": SmtpSecurity.NONE,
        "from_address": "noreply@portal.example",
        "message_id_domain": "portal.example",
        "timeout": 5.0,
    }
    return SmtpSettings(**{**defaults, **overrides})


@dataclass
class SmtpServer:
    port: int
    handler: RecordingHandler
    server: asyncio.base_events.Server
    #: Every session the server accepted (aiosmtpd protocol instances).
    sessions: list[SMTP] = field(default_factory=list)

    def drop_connections(self) -> int:
        """Close every open session from the server's side (an MTA's idle timeout, a
        restart); returns how many were open."""
        open_ = [
            s for s in self.sessions if s.transport is not None and not s.transport.is_closing()
        ]
        for session in open_:
            assert session.transport is not None
            session.transport.close()
        return len(open_)

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_smtp(
    *,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    require_auth: bool = False,
    rcpt_delay: float = 0.0,
) -> SmtpServer:
    handler = RecordingHandler(rcpt_delay)
    loop = asyncio.get_running_loop()
    sock = free_socket()

    sessions: list[SMTP] = []

    def factory() -> SMTP:
        session = NoDelaySMTP(
            handler,
            hostname="localhost",
            tls_context=tls_context,
            require_starttls=tls_context is not None,
            authenticator=handler.authenticate if require_auth else None,
            auth_required=require_auth,
            auth_require_tls=True,
        )
        sessions.append(session)
        return session

    server = await loop.create_server(factory, sock=sock, ssl=implicit_tls)
    return SmtpServer(port=sock.getsockname()[1], handler=handler, server=server, sessions=sessions)


# ------------------------------------------------------- SMS provider stand-in


INTERNAL_ERROR = {
    "type": "https://developer.vonage.com/api-errors#internal-error",
    "title": "Internal Error",
    "detail": "Temporary failure, please retry.",
}


@dataclass
class Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SmsProvider:
    """Answers `POST /v1/messages` from a script; records every request."""

    base_url: str = ""
    script: list[Scripted] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    #: The answer when the script is empty; `None` accepts with 202.
    otherwise: Scripted | None = None

    def answer(
        self,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Script the next answer (unscripted requests are accepted with 202)."""
        self.script.append(Scripted(status, body, headers or {}, delay))

    def fail_then_accept(self, failures: int, status: int = 500) -> None:
        self.script[:] = [Scripted(status, INTERNAL_ERROR) for _ in range(failures)]
        self.script.append(Scripted(202, {"message_uuid": str(uuid4())}))

    def fail_always(self, status: int = 500) -> None:
        self.script.clear()
        self.otherwise = Scripted(status, INTERNAL_ERROR)

    def accept_all(self) -> None:
        self.script.clear()
        self.otherwise = None

    def accepted(self) -> list[RecordedRequest]:
        """Requests answered with 2xx (what the provider would have delivered)."""
        return [r for r in self.requests if 200 <= r.status < 300]

    async def app(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Any],
        send: Callable[[dict[str, Any]], Any],
    ) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        answer = self.script.pop(0) if self.script else self.otherwise
        if answer is None:
            answer = Scripted(202, {"message_uuid": str(uuid4())})
        recorded = RecordedRequest(scope["method"], scope["path"], headers, body, answer.status)
        self.requests.append(recorded)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        payload = json.dumps(answer.body).encode()
        content_type = "application/json" if answer.status < 400 else "application/problem+json"
        response_headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(payload)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in answer.headers.items()),
        ]
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": response_headers}
        )
        await send({"type": "http.response.body", "body": payload})


@asynccontextmanager
async def running_sms_provider() -> AsyncIterator[SmsProvider]:
    """The SMS provider stand-in on 127.0.0.1 and a random port, for the block's duration."""
    provider = SmsProvider()
    sock = free_socket()
    config = uvicorn.Config(
        provider.app,
        lifespan="off",
        interface="asgi3",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "SMS provider stand-in did not start"
    provider.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield provider
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def running_smtp(**options: Any) -> AsyncIterator[SmtpServer]:
    """An SMTP server (`start_smtp` options) for the block's duration."""
    smtp = await start_smtp(**options)
    try:
        yield smtp
    finally:
        await smtp.stop()
