"""The load driver: customers' journeys through the real entry points, and what each of
them was promised (the `Ledger` the invariants are checked against).

One journey is one customer: policy administration issues their policy (Kafka or the
internal HTTP API, alternately), they register and log in through a gateway (the two
alternate request by request), verify their e-mail with the code mailed to them, activate
with the code of the letter, join the loyalty programme; collections reports two premium
payments (one on Kafka, one over HTTP); they report a claim (updates by e-mail) that
claims handling moves through review, assessment, settlement and payment; output
management posts a document to their mailbox; they turn e-mail instead of letter on, off
and on again; they redeem a reward (twice with the same redemption id: a retry); policy
administration cancels the policy. At most `concurrency` journeys run at once: the load
is steady and bounded.

Clients behave as real ones do: a request whose answer was lost or was a 5xx is sent
again with the same idempotency key / message id, for a while; a journey that cannot
go on is abandoned (counted, not an invariant failure). Only what was *accepted* (a 2xx
answer, a Kafka publish acknowledged) is promised.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from contracts_schemas import upstream
from contracts_schemas.base import Contract
from e2e_factories import PASSWORD, PDF, PNG, Person, document_for, issued_to, new_person
from e2e_harness import code_in
from servicekit.auth import basic_authorization
from servicekit.kafka import servers
from servicekit.testing import publish

from chaos.fleet import LETTERS, SYSTEMS, Fleet

RETRY_FOR = 150.0  # a client keeps retrying one request this long (faults last less)
WAIT_FOR = 240.0  # a journey waits this long for another service to learn something
TRANSITIONS: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("start_review", "in_review", {}),
    ("start_assessment", "assessment", {}),
    ("settle", "approved", {"amount_cents": 50_000}),
    ("pay", "paid", {}),
)


class Abandoned(Exception):
    """The journey cannot go on (a wait ran out); what it was promised so far stands."""


@dataclass
class Answer:
    at: float
    via: str  # "gateway-a", "contracts-b" ...: who answered
    upstream: str  # the service behind the route
    method: str
    path: str
    status: int
    problem: bool


@dataclass
class Ledger:
    """Everything accepted, and every answer with its moment (time.monotonic())."""

    answers: list[Answer] = field(default_factory=list)
    no_answer: Counter[str] = field(default_factory=Counter)  # refused/timed out, by target
    policies: dict[str, str] = field(default_factory=dict)  # policy number -> kafka/http
    payments: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (policy, holder)
    cancellations: dict[str, str] = field(default_factory=dict)  # policy number -> kafka/http
    registrations: dict[str, str] = field(default_factory=dict)  # username -> holder id
    activated: set[str] = field(default_factory=set)  # customer ids
    enrolled: set[str] = field(default_factory=set)
    claims: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (number, customer)
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)  # msg -> (number, new)
    documents: dict[str, str] = field(default_factory=dict)  # document id -> customer
    preference: dict[str, bool] = field(default_factory=dict)  # customer -> last accepted
    redemptions: dict[str, str] = field(default_factory=dict)  # redemption id -> customer
    logins: int = 0
    journeys_started: int = 0
    journeys_done: int = 0
    abandoned: Counter[str] = field(default_factory=Counter)  # by step

    def events_driven(self) -> int:
        return (
            len(self.policies)
            + len(self.payments)
            + len(self.cancellations)
            + len(self.registrations)
            + self.logins
            + len(self.activated)
            + len(self.enrolled)
            + len(self.claims)
            + len(self.transitions)
            + len(self.documents)
            + len(self.redemptions)
            + sum(1 for a in self.answers if a.method == "PUT" and a.status == 200)
        )


def _upstream_of(path: str) -> str:
    first = path.strip("/").split("/")[0]
    return {"messages": "documents", ".well-known": "identity"}.get(first, first)


class Driver:
    def __init__(self, fleet: Fleet, ledger: Ledger, dsn: str, bootstrap: str,
                 platform: Any, seed: int) -> None:  # fmt: skip
        self.fleet = fleet
        self.ledger = ledger
        self.dsn = dsn
        self.bootstrap = bootstrap
        self.platform = platform  # e2e_harness.Platform: the stand-ins' mails and letters
        self.random = random.Random(seed)  # noqa: S311 - seeded: the run can be repeated
        self._turn = itertools.cycle(LETTERS)
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._producer: AIOKafkaProducer | None = None
        self._producer_started = asyncio.Lock()
        self._pool: asyncpg.Pool | None = None
        self._rewards: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ plumbing

    async def __aenter__(self) -> Driver:
        for instance in self.fleet.instances.values():
            self._clients[instance.name] = httpx.AsyncClient(
                base_url=instance.url, timeout=httpx.Timeout(20.0, connect=3.0), trust_env=False
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self._clients.values():
            await client.aclose()
        if self._producer is not None:
            await self._producer.stop()
        if self._pool is not None:
            await self._pool.close()

    async def run(self, seconds: float, concurrency: int) -> None:
        """Journeys, `concurrency` at once, started until `seconds` passed; then the ones
        under way finish (or are abandoned)."""
        until = time.monotonic() + seconds
        running: set[asyncio.Task[None]] = set()
        number = 0
        while time.monotonic() < until:
            while len(running) < concurrency and time.monotonic() < until:
                number += 1
                running.add(asyncio.create_task(self.journey(number)))
            _, running = await asyncio.wait(
                running, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
            )
        if running:
            await asyncio.wait(running)

    async def request(
        self, target: str, method: str, path: str, *, ok: tuple[int, ...],
        token: str | None = None, system: str | None = None, **kw: Any,
    ) -> httpx.Response:  # fmt: skip
        """Send until the answer's status is in `ok` or is a 4xx (returned either way);
        5xx and lost answers are sent again (same body: same idempotency keys). `target`
        "gateway" alternates between the two gateways."""
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if system:
            headers["Authorization"] = basic_authorization(system, SYSTEMS[system])
        deadline = time.monotonic() + RETRY_FOR
        pause = 0.2
        while True:
            name = f"{target}-{next(self._turn)}"
            try:
                response = await self._clients[name].request(method, path, headers=headers, **kw)
            except httpx.HTTPError:
                self.ledger.no_answer[name] += 1
            else:
                self.ledger.answers.append(Answer(
                    time.monotonic(), name, _upstream_of(path) if target == "gateway" else target,
                    method, path, response.status_code,
                    response.headers.get("content-type", "").startswith("application/problem"),
                ))  # fmt: skip
                if response.status_code in ok or 400 <= response.status_code < 500:
                    return response
            if time.monotonic() > deadline:
                raise Abandoned(f"{method} {path}: no answer within {RETRY_FOR}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 3.0)

    async def until(self, what: str, check: Callable[[], Awaitable[Any]]) -> Any:
        """Poll `check` until it returns something truthy (the journey's next step)."""
        deadline = time.monotonic() + WAIT_FOR
        while time.monotonic() < deadline:
            try:
                found = await check()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                found = None
            if found:
                return found
            await asyncio.sleep(0.5)
        raise Abandoned(what)

    async def count(self, service: str, sql: str, *args: Any) -> int:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
        async with self._pool.acquire() as conn:
            value: int = await conn.fetchval(
                sql.replace("{schema}", self.fleet.schema(service)), *args
            )
        return value

    async def send(self, source: str, message: Contract) -> None:
        """Publish as the upstream system would, until the broker acknowledged (acks=all;
        a retry after an unknown outcome may publish it twice: contracts absorbs that)."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                await publish(await self._started_producer(), message,
                              prefix=self.fleet.prefix, source=source)  # fmt: skip
                return
            except (KafkaError, OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise Abandoned(f"publish to {source}") from None
                await asyncio.sleep(1.0)

    async def _started_producer(self) -> AIOKafkaProducer:
        """The one producer of the run, started by the first journey that needs it (the
        others wait for it: two started at once would leave one never stopped)."""
        async with self._producer_started:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=servers(self.bootstrap), acks="all",
                    enable_idempotence=True, request_timeout_ms=15_000,
                    client_id=f"chaos-{secrets.token_hex(3)}",
                )  # fmt: skip
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def upstream(self, route: str, system: str, message: Contract, via: str) -> bool:
        """An upstream message on Kafka or the internal HTTP API of contracts; True when
        it was accepted (acknowledged / 2xx)."""
        if via == "kafka":
            await self.send(f"/{system}", message)
            return True
        response = await self.request(
            "contracts", "POST", f"/internal/upstream/{route}", ok=(200, 201), system=system,
            json=message.model_dump(mode="json"),
        )  # fmt: skip
        return response.status_code in (200, 201)

    def _mail_code(self, email: str) -> str | None:
        codes = [code_in(text) for _, text in self.platform.mail_texts(email)
                 if "Bestätigungscode" in text]  # fmt: skip
        return codes[-1] if codes else None

    def _letter_code(self, recipient: str) -> str | None:
        letters = self.platform.letters(recipient)
        return code_in(letters[-1][1]) if letters else None

    # ------------------------------------------------------------------ a journey

    async def journey(self, number: int) -> None:
        self.ledger.journeys_started += 1
        step = "start"
        try:
            person = new_person()
            step = "policy"
            policy = await self._policy(person, number)
            step = "onboarding"
            token, customer = await self._onboard(person, policy)
            # The customer's steps, in order; one abandoned ends the journey there.
            steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("enrolment", lambda: self._enrol(token, customer)),
                ("payments", lambda: self._payments(policy, customer)),
                ("claim", lambda: self._claim(token, customer)),
                ("document", lambda: self._document(customer, policy)),
                ("preference", lambda: self._preference(token, customer)),
                ("redemption", lambda: self._redeem(token, customer)),
                ("cancellation", lambda: self._cancel(policy, number)),
            ]
            for name, take in steps:
                step = name  # where an abandoned journey stopped
                await take()
            self.ledger.journeys_done += 1
        except Abandoned:
            self.ledger.abandoned[step] += 1

    async def _policy(self, person: Person, number: int) -> str:
        policy = f"HR-{secrets.token_hex(5).upper()}"
        message = issued_to(policy, person, datetime.now().astimezone())
        via = "kafka" if number % 2 else "http"
        if await self.upstream("policies", "policy-admin", message, via):
            self.ledger.policies[policy] = via
        await self.until(
            "identity learns the policy",
            lambda: self.count(
                "identity",
                "SELECT count(*) FROM {schema}.policies WHERE policy_number = $1",
                policy,
            ),
        )
        return policy

    async def _onboard(self, person: Person, policy: str) -> tuple[str, str]:
        registered = await self.request("gateway", "POST", "/identity/registrations",
                                        ok=(202,), json=person.registration(policy))  # fmt: skip
        if registered.status_code == 202:
            self.ledger.registrations[person.username] = person.holder_id
        login = await self.request(
            "gateway",
            "POST",
            "/identity/login",
            ok=(200,),
            json={"username": person.username, "password": PASSWORD},
        )
        if login.status_code != 200:
            raise Abandoned("login")
        self.ledger.logins += 1
        token = str(login.json()["access_token"])
        code = await self.until(
            "verification mail", lambda: asyncio.to_thread(self._mail_code, person.email)
        )
        verified = await self.request("gateway", "POST", "/identity/email/verify", ok=(200,),
                                      token=token, json={"code": code})  # fmt: skip
        letter = await self.until(
            "activation letter", lambda: asyncio.to_thread(self._letter_code, person.recipient)
        )
        activated = await self.request("gateway", "POST", "/identity/activation", ok=(200,),
                                       token=token, json={"code": letter})  # fmt: skip
        if verified.status_code != 200 or activated.status_code != 200:
            raise Abandoned("activation")
        self.ledger.activated.add(person.holder_id)
        return token, person.holder_id

    async def _enrol(self, token: str, customer: str) -> None:
        async def enrolled() -> bool:
            response = await self.request("gateway", "POST", "/loyalty/enrolment",
                                          ok=(201,), token=token)  # fmt: skip
            return response.status_code in (201, 409)  # 409: an earlier answer was lost

        await self.until("loyalty learns the customer", enrolled)
        self.ledger.enrolled.add(customer)

    async def _payments(self, policy: str, holder: str) -> None:
        for via in ("kafka", "http"):
            payment = upstream.PremiumPaidUpstream(
                message_id=f"co-{uuid.uuid4().hex}", source_system="collections",
                occurred_at=datetime.now(UTC), policy_number=policy,
                payment_id=f"pay-{uuid.uuid4().hex[:12]}", amount_cents=12_050,
            )  # fmt: skip
            if await self.upstream("payments", "collections", payment, via):
                self.ledger.payments[payment.payment_id] = (policy, holder)

    async def _claim(self, token: str, customer: str) -> None:
        contracts = await self.until("contracts shows the contract", lambda: self._contracts(token))
        form = {"policy_id": contracts[0]["policy_id"], "claim_type": "household",
                "incident_date": datetime.now().astimezone().date().isoformat(),
                "place": "Köln, Heidestraße 17", "description": "Wasserschaden in der Küche",
                "notification_channel": "email"}  # fmt: skip
        key = f"claim-{uuid.uuid4().hex}"

        async def reported() -> dict[str, Any] | None:
            response = await self.request(
                "gateway", "POST", "/claims", ok=(201,), token=token, data=form,
                files=[("attachments", ("kueche.png", PNG, "image/png"))],
                headers={"Idempotency-Key": key},
            )  # fmt: skip
            return response.json() if response.status_code == 201 else None  # 404: not yet

        claim = await self.until("claims learns the contract", reported)
        claim_number = str(claim["claim_number"])
        self.ledger.claims[str(claim["claim_id"])] = (claim_number, customer)
        for transition, status, extra in TRANSITIONS:
            message = f"ch-{uuid.uuid4().hex}"
            body = {"message_id": message, "claim_number": claim_number,
                    "transition": transition, **extra}  # fmt: skip
            moved = await self.request("claims", "POST", "/internal/claims/transitions",
                                       ok=(200,), system="claims-handling", json=body)  # fmt: skip
            if moved.status_code != 200:
                raise Abandoned(f"transition {transition}: {moved.status_code}")
            self.ledger.transitions[message] = (claim_number, status)

    async def _contracts(self, token: str) -> list[dict[str, Any]] | None:
        response = await self.request("gateway", "GET", "/contracts", ok=(200,), token=token)
        listed = response.json() if response.status_code == 200 else []
        return listed if isinstance(listed, list) and listed else None

    async def _document(self, customer: str, policy: str) -> None:
        body = document_for(customer, policy, "Beitragsrechnung", content=PDF)
        response = await self.request(
            "documents",
            "POST",
            "/internal/documents",
            ok=(200, 201),
            system="output-management",
            json=body,
        )
        if response.status_code in (200, 201):
            self.ledger.documents[str(response.json()["document_id"])] = customer

    async def _preference(self, token: str, customer: str) -> None:
        for value in (True, False, True):

            async def put(value: bool = value) -> bool:
                response = await self.request(
                    "gateway", "PUT", "/documents/delivery-preference", ok=(200,), token=token,
                    json={"email_instead_of_letter": value},
                )  # fmt: skip
                return response.status_code == 200  # 409: documents has no verified address yet

            await self.until("documents learns the verified address", put)
            self.ledger.preference[customer] = value

    async def _redeem(self, token: str, customer: str) -> None:
        if not self._rewards:
            response = await self.request("gateway", "GET", "/loyalty/rewards", ok=(200,),
                                          token=token)  # fmt: skip
            self._rewards = [r for r in response.json() if r["co_payment_allowed"]]
        if not self._rewards:
            return
        reward = self.random.choice(self._rewards)
        redemption = f"rd-{uuid.uuid4().hex}"
        for _ in range(2):  # the second is a client's retry with the same redemption id
            response = await self.request(
                "gateway", "POST", "/loyalty/redemptions", ok=(201,), token=token,
                json={"reward_id": reward["reward_id"], "redemption_id": redemption},
            )  # fmt: skip
            if response.status_code == 201:
                self.ledger.redemptions[redemption] = customer

    async def _cancel(self, policy: str, number: int) -> None:
        message = upstream.PolicyCancelledUpstream(
            message_id=f"pa-{uuid.uuid4().hex}", source_system="policy-admin",
            occurred_at=datetime.now(UTC), policy_number=policy,
            effective_date=datetime.now().astimezone().date(),
        )  # fmt: skip
        via = "http" if number % 2 else "kafka"
        if await self.upstream("cancellations", "policy-admin", message, via):
            self.ledger.cancellations[policy] = via
