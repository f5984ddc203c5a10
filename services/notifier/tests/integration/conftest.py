"""Fixtures for the channel adapter tests: the real servers of `notifier_servers` (SMTP,
SMS provider stand-in), certificates for TLS, and event factories."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from contracts_schemas.claims import ClaimStatus, ClaimStatusChanged
from contracts_schemas.common import PostalAddress
from contracts_schemas.identity import ActivationCodeIssued, CustomerRegistered, LoginCodeRequested
from notifier.adapters.render import Renderer
from notifier_servers import (
    SmsProvider,
    SmtpServer,
    free_socket,
    running_sms_provider,
    start_smtp,
)

NOW = dt.datetime(2026, 3, 2, 13, 35, tzinfo=dt.UTC)


# ------------------------------------------------------------------------ events


class Events:
    def __init__(self) -> None:
        self.customer_id = f"cust-{uuid4().hex[:12]}"
        self.now = NOW
        self.version = 0
        self.address = PostalAddress(
            recipient="Erika Mustermann", street="Heidestraße 17", postal_code="51147", city="Köln"
        )

    def _base(self, aggregate_id: str | None = None, **fields: Any) -> dict[str, Any]:
        self.version += 1
        return {
            "event_id": uuid4(),
            "aggregate_id": aggregate_id or self.customer_id,
            "aggregate_version": self.version,
            "occurred_at": self.now,
            "customer_ids": (self.customer_id,),
            "customer_id": self.customer_id,
            **fields,
        }

    def registered(self, email: str = "erika@example.org") -> CustomerRegistered:
        return CustomerRegistered(
            **self._base(
                first_name="Erika",
                last_name="Mustermann",
                birth_date=dt.date(1980, 5, 17),
                address=self.address,
                email=email,
                mobile="0151 2345678",
            )
        )

    def claim_status(self) -> ClaimStatusChanged:
        return ClaimStatusChanged(
            **self._base(
                "claim-1",
                claim_id="claim-1",
                claim_number="SCH-2026-000123",
                old_status=ClaimStatus.IN_REVIEW,
                new_status=ClaimStatus.DOCUMENTS_REQUESTED,
                expected_completion_date=dt.date(2026, 3, 31),
            )
        )

    def login_code(self) -> LoginCodeRequested:
        return LoginCodeRequested(
            **self._base(
                code="482913", mobile="0151 2345678", expires_at=self.now + dt.timedelta(minutes=5)
            )
        )

    def activation_code(self, address: PostalAddress | None = None) -> ActivationCodeIssued:
        return ActivationCodeIssued(
            **self._base(
                code="X7K2-9PQ4",
                address=address or self.address,
                expires_at=self.now + dt.timedelta(days=90),
            )
        )


@pytest.fixture
def ev() -> Events:
    return Events()


@pytest.fixture(scope="session")
def renderer() -> Renderer:
    return Renderer()


SmtpFactory = Callable[..., Any]


@pytest.fixture
async def smtp_factory() -> AsyncIterator[SmtpFactory]:
    """Starts SMTP servers (`start_smtp` options) and stops them after the test."""
    started: list[SmtpServer] = []

    async def start(**options: Any) -> SmtpServer:
        smtp = await start_smtp(**options)
        started.append(smtp)
        return smtp

    yield start
    for smtp in started:
        await smtp.stop()


@pytest.fixture
async def smtp_server(smtp_factory: SmtpFactory) -> SmtpServer:
    server: SmtpServer = await smtp_factory()
    return server


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    sock = free_socket()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


# -------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certificates:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A self-signed certificate for 127.0.0.1/localhost (cryptography is in the lock)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificates(cert=cert_path, key=key_path)


@pytest.fixture
async def sms_provider() -> AsyncIterator[SmsProvider]:
    async with running_sms_provider() as provider:
        yield provider
