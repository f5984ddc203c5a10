"""Start the platform's services as real processes for end-to-end tests.

Each test session gets its own topic prefix and database schemas, so it never sees what
`make run` or another session left behind, and a business-time file it moves at will.

`running_platform(FULL)` is the platform customers use: identity (with explicit
development keys), contracts, loyalty, notifier, claims, documents and the gateway, every
one of them verifying identity's tokens (`PORTAL_JWKS_URL` = identity's key set). The
notifier's channels end in stand-ins the tests read: an SMTP sink, the SMS provider
stand-in and a print-queue folder (`StandIns`).

`running_platform(("contracts", "loyalty"), ..., test_key=True)` is the older walking
skeleton: no identity, tokens minted with a key of the test's own (`Platform.token`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from e2e_factories import PASSWORD, issued_to, new_person
from notifier_servers import SmsProvider, SmtpServer, free_socket, parse, plain_text, start_smtp
from pypdf import PdfReader
from readiness import Startup, wait_ready
from service_environment import Process, Run, environment, fresh_secrets
from servicekit.auth import basic_authorization, generate_signing_key, mint_token
from servicekit.testing import HANG_GUARD_SECONDS

BIN = Path(sys.executable).parent
SYSTEMS = {
    "policy-admin": "pa-secret-e2e",
    "collections": "co-secret-e2e",
    "operators": "op-secret-e2e",
    "claims-handling": "ch-secret-e2e",
    "output-management": "om-secret-e2e",
    "notifier": "nt-secret-e2e",
    "contracts": "ct-secret-e2e",  # contracts asks identity's internal mTAN API (ID-6)
}
# The platform customers use; identity first (every other service verifies its tokens).
FULL = ("identity", "contracts", "loyalty", "notifier", "claims", "documents", "gateway")


def free_port() -> int:
    with free_socket() as s:
        return int(s.getsockname()[1])


class StandIns:
    """The notifier's outside world on this machine: an SMTP sink and the SMS provider
    stand-in (services/notifier/tests/notifier_servers.py), served by an event loop of
    their own in a thread, so that synchronous and asynchronous tests can read them."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.smtp: SmtpServer = self._run(start_smtp())
        self.sms = SmsProvider()
        self._sms_socket = free_socket()
        self._sms_server = uvicorn.Server(
            uvicorn.Config(
                self.sms.app, lifespan="off", interface="asgi3", log_config=None,
                access_log=False, timeout_graceful_shutdown=1,
            )
        )  # fmt: skip
        self._sms_task = self._run(self._serve_sms())
        self.sms.base_url = f"http://127.0.0.1:{self._sms_socket.getsockname()[1]}"

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _serve_sms(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self._sms_server.serve(sockets=[self._sms_socket]))
        for _ in range(500):
            if self._sms_server.started:
                return task
            await asyncio.sleep(0.01)
        raise RuntimeError("SMS provider stand-in did not start")

    def mails(self, to: str | None = None) -> list[EmailMessage]:
        envelopes = list(self.smtp.handler.envelopes)
        return [parse(e) for e in envelopes if to is None or to in e.rcpt_tos]

    def texts(self, to: str | None = None) -> list[str]:
        """SMS texts the provider accepted (to a number, or all)."""
        bodies = [r.json() for r in list(self.sms.accepted())]
        return [str(b["text"]) for b in bodies if to is None or b.get("to") == to.lstrip("+")
                or b.get("to") == to]  # fmt: skip

    def stop(self) -> None:
        async def stop_all() -> None:
            self._sms_server.should_exit = True
            await self.smtp.stop()

        self._run(stop_all())
        time.sleep(0.2)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._sms_socket.close()


@dataclass
class Platform:
    prefix: str
    workdir: Path
    clock_file: Path
    # The test's own signing key (the walking skeleton only); None: identity issues tokens.
    private_key: dict[str, Any] | None = None
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    stand_ins: StandIns | None = None
    print_queue: Path | None = None

    def set_time(self, at: datetime) -> None:
        self.clock_file.write_text(at.isoformat())

    def wall_time(self) -> None:
        """Business time follows the wall clock again."""
        self.clock_file.unlink(missing_ok=True)

    def token(self, customer_id: str, second_factor: bool = False) -> str:
        assert self.private_key is not None, "this platform's tokens come from identity"
        methods = ("pwd", "sms") if second_factor else ("pwd",)
        expires = datetime.now().astimezone() + timedelta(hours=1)
        return mint_token(self.private_key, customer_id, "portal", expires, methods=methods)

    def as_customer(self, service: str, customer_id: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.urls[service],
            headers={"Authorization": f"Bearer {self.token(customer_id)}"},
            timeout=10,
        )

    def as_system(self, service: str, system: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.urls[service],
            headers={"Authorization": basic_authorization(system, SYSTEMS[system])},
            timeout=30,
        )

    def gateway(self, access_token: str | None = None) -> httpx.Client:
        """A client of the customers' one entry point, with a bearer token when given."""
        headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        return httpx.Client(base_url=self.urls["gateway"], headers=headers, timeout=30)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def schema(self, service: str) -> str:
        return f"{self.prefix.rstrip('.').replace('-', '_')}_{service}"

    # ------------------------------------------------------------- what customers get

    def mails(self, to: str) -> list[EmailMessage]:
        assert self.stand_ins is not None
        return self.stand_ins.mails(to)

    def mail_texts(self, to: str) -> list[tuple[str, str]]:
        """(subject, plain text) of every mail to `to`, in arrival order."""
        return [(str(m["Subject"]), plain_text(m)) for m in self.mails(to)]

    def sms_texts(self, to: str) -> list[str]:
        assert self.stand_ins is not None
        return self.stand_ins.texts(to)

    def letters(self, recipient: str) -> list[tuple[dict[str, Any], str]]:
        """(manifest, text of the letter) of every complete print job addressed to
        `recipient` (the first address line), oldest first."""
        assert self.print_queue is not None
        found = []
        for manifest_path in sorted(self.print_queue.glob("*.json"), key=_mtime):
            manifest = json.loads(manifest_path.read_text())
            if manifest["recipient"][:1] != [recipient]:
                continue
            reader = PdfReader(self.print_queue / manifest["file"])
            found.append((manifest, "\n".join(page.extract_text() for page in reader.pages)))
        return found

    async def count(self, service: str, sql: str, *args: Any) -> int:
        """A number from a service's own schema - for waits on state no API shows yet."""
        conn = await asyncpg.connect(
            os.environ["PORTAL_DATABASE_URL"], server_settings={"search_path": self.schema(service)}
        )
        try:
            value: int = await conn.fetchval(sql, *args)
        finally:
            await conn.close()
        return value


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _process_environment(
    platform: Platform, service: str, port: int, jwks: dict[str, Any] | None
) -> dict[str, str]:
    """One process per service (tests/service_environment.py builds it, as for the chaos
    run); every service verifies identity's tokens, or the test's own key's."""
    below = {k: v for k, v in os.environ.items() if k not in {"PORTAL_JWKS", "PORTAL_JWKS_URL"}}
    keys = (
        {"PORTAL_JWKS": json.dumps(jwks)} if jwks is not None
        else {"PORTAL_JWKS_URL": platform.urls["identity"] + "/.well-known/jwks.json"}
    )  # fmt: skip
    stand_ins = platform.stand_ins
    run = Run(
        platform.prefix, platform.clock_file, SYSTEMS, below, keys,
        smtp_port=stand_ins.smtp.port if stand_ins else 0,
        sms_url=stand_ins.sms.base_url if stand_ins else "",
        print_queue=platform.print_queue,
    )  # fmt: skip
    process = Process(
        service, port, f"{platform.prefix}{service}", fresh_secrets(service, "e2e-1"),
        {name: [url] for name, url in platform.urls.items()},
    )  # fmt: skip
    return environment(run, process)


@contextmanager
def running_platform(
    services: tuple[str, ...], prefix: str, *, test_key: bool = False
) -> Iterator[Platform]:
    """The services as real processes; `test_key`: tokens from a key of the test's own
    instead of identity's key set (the walking skeleton without identity)."""
    workdir = Path(tempfile.mkdtemp(prefix="portal-e2e-"))
    platform = Platform(prefix, workdir, workdir / "business-time")
    jwks: dict[str, Any] | None = None
    if test_key:
        platform.private_key, jwks = generate_signing_key("e2e")
    else:
        assert "identity" in services, "without a test key, identity issues the tokens"
    if "notifier" in services:
        platform.stand_ins = StandIns()
        platform.print_queue = workdir / "print-queue"
        platform.print_queue.mkdir()
    ports = {service: free_port() for service in services}
    platform.urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
    try:
        for service in services:
            log = workdir / f"{service}.log"
            platform.logs[service] = log
            platform.processes[service] = subprocess.Popen(
                [str(BIN / service), "serve"],
                env=_process_environment(platform, service, ports[service], jwks),
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
        for service in services:
            _wait_ready(platform, service)
        yield platform
    finally:
        for process in platform.processes.values():
            process.send_signal(signal.SIGTERM)
        for service, process in platform.processes.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            if process.returncode not in (0, -signal.SIGTERM):
                sys.stderr.write(platform.logs[service].read_text()[-4000:])
        if platform.stand_ins is not None:
            platform.stand_ins.stop()
        # The run's directory (logs, print queue, business time) goes with it: a crashed
        # service's log tail was written to stderr above.
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(platform: Platform, service: str) -> None:
    process, log = platform.processes[service], platform.logs[service]
    wait_ready(Startup(service, process, platform.urls[service], log))


def eventually(check: Any, within: float = HANG_GUARD_SECONDS, every: float = 0.25) -> Any:
    """Poll `check()` until it returns a truthy value; return it."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not reached within {within}s; last value: {last!r}")


async def eventually_async(
    check: Any, within: float = HANG_GUARD_SECONDS, every: float = 0.25
) -> Any:
    """`eventually` for a coroutine function `check`."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not reached within {within}s; last value: {last!r}")


CODE_LINE = re.compile(r"(?:Aktivierungscode|Bestätigungscode):\s*(\S+)")


# ------------------------------------------------------------------- customer journeys


def first_word(text: str) -> str:
    """SMS codes stand first: "123456 ist Ihr Anmeldecode ..."."""
    return text.split()[0]


def code_in(text: str) -> str:
    found = CODE_LINE.search(text)
    assert found, f"no code in {text!r}"
    return found.group(1)


def answer(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


def problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A problem document (RFC 9457) with one of `statuses`."""
    assert response.status_code in statuses, f"{response.request.url}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


@dataclass
class Customer:
    """A registered, logged-in customer of the full platform."""

    person: Any  # e2e_factories.Person
    policy_number: str
    login: dict[str, Any]

    @property
    def token(self) -> str:
        return str(self.login["access_token"])

    @property
    def customer_id(self) -> str:
        return str(self.person.customer_id)


def letter_code(platform: Platform, recipient: str, within: float = HANG_GUARD_SECONDS) -> str:
    """The activation code printed in the newest letter to `recipient` (ID-3)."""
    letters = eventually(lambda: platform.letters(recipient), within=within)
    manifest, text = letters[-1]
    assert "Aktivierungscode" in text, manifest
    return code_in(text)


def mail_code(platform: Platform, email: str, within: float = HANG_GUARD_SECONDS) -> str:
    """The e-mail verification code in the newest verification mail to `email`."""

    def codes() -> list[str]:
        return [code_in(text) for subject, text in platform.mail_texts(email)
                if "Bestätigungscode" in text]  # fmt: skip

    return str(eventually(codes, within=within)[-1])


def sms_codes(platform: Platform, mobile: str, marker: str) -> list[str]:
    """Codes of the SMS to `mobile` whose text says `marker` ("Anmeldecode", "mTAN")."""
    return [first_word(t) for t in platform.sms_texts(mobile) if marker in t]


def next_sms_code(platform: Platform, mobile: str, marker: str, seen: int) -> str:
    """The code of the first SMS with `marker` after the `seen` ones already read."""
    return str(eventually(lambda: sms_codes(platform, mobile, marker)[seen:])[0])


def log_in(platform: Platform, username: str, password: str) -> dict[str, Any]:
    with platform.gateway() as portal:
        return answer(portal.post("/identity/login",
                                  json={"username": username, "password": password}))  # fmt: skip


def log_in_with_sms(platform: Platform, person: Any, password: str) -> dict[str, Any]:
    """ID-5: password, then the code the SMS provider stand-in received."""
    seen = len(sms_codes(platform, person.mobile, "Anmeldecode"))
    step = log_in(platform, person.username, password)
    assert step["status"] == "sms_required", step
    code = next_sms_code(platform, person.mobile, "Anmeldecode", seen)
    with platform.gateway() as portal:
        return answer(
            portal.post(
                "/identity/login/sms", json={"login_ticket": step["login_ticket"], "code": code}
            )
        )


async def onboard(platform: Platform, publish: Any, *, with_contract: bool = True) -> Customer:
    """A new customer through the gateway: (their policy issued by policy administration,)
    registration naming the policy, the activation letter from the print queue, login,
    e-mail verification, activation; waits until contracts shows the contract."""

    person = new_person()
    number = f"HR-{secrets.token_hex(5).upper()}"
    if with_contract:
        await publish("/policy-admin", issued_to(number, person, datetime.now().astimezone()))
        await eventually_async(
            lambda: platform.count(
                "identity", "SELECT count(*) FROM policies WHERE policy_number = $1", number
            )
        )
    with platform.gateway() as portal:
        registered = portal.post(
            "/identity/registrations", json=person.registration(number if with_contract else None)
        )
        assert registered.status_code == 202, registered.text
    tokens = log_in(platform, person.username, PASSWORD)
    assert tokens["status"] == "authenticated", tokens
    with platform.gateway(tokens["access_token"]) as portal:
        answer(
            portal.post("/identity/email/verify", json={"code": mail_code(platform, person.email)})
        )
        if with_contract:
            code = letter_code(platform, person.recipient)
            answer(portal.post("/identity/activation", json={"code": code}))
        me = answer(portal.get("/identity/me"))
        person.customer_id = me["customer_id"]
        if with_contract:
            assert person.customer_id == person.holder_id, "ID-3: the account is the holder's"

            def shown() -> list[dict[str, Any]]:
                listed: list[dict[str, Any]] = answer(portal.get("/contracts"))  # type: ignore[assignment]
                return [c for c in listed if c["policy_number"] == number]

            eventually(shown)
    return Customer(person, number, tokens)


def enable_two_factor(platform: Platform, access_token: str, person: Any) -> None:
    """ID-5: the mobile number confirmed with the code sent to it (log in again after)."""
    with platform.gateway(access_token) as portal:
        seen = len(sms_codes(platform, person.mobile, "mTAN"))
        answer(portal.post("/identity/two-factor", json={"mobile": person.mobile}))
        code = next_sms_code(platform, person.mobile, "mTAN", seen)
        confirmed = answer(portal.post("/identity/two-factor/confirm", json={"code": code}))
    assert confirmed["login_again"] is True
