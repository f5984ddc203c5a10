"""servicekit.http.client_address: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import pytest
from servicekit.http import client_address


@pytest.mark.parametrize(
    ("peer", "header", "proxies", "client"),
    [
        ("203.0.113.9", "10.9.9.9", [], "203.0.113.9"),  # no proxies: the peer
        ("203.0.113.9", "10.9.9.9", ["10.0.0.0/8"], "203.0.113.9"),  # untrusted peer
        ("10.0.0.2", "198.51.100.7", ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.3", ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.2", None, ["10.0.0.0/8"], "10.0.0.2"),  # nothing forwarded: the peer
        ("10.0.0.2", "not-an-ip", ["10.0.0.0/8"], "not-an-ip"),
        ("127.0.0.1", "198.51.100.7", ["127.0.0.1", "bogus"], "198.51.100.7"),
    ],
)
def test_the_client_is_the_last_address_before_the_trusted_proxies(
    peer: str, header: str | None, proxies: list[str], client: str
) -> None:
    assert client_address(peer, header, proxies)[0] == client


def test_the_chain_ends_with_the_peer() -> None:
    assert client_address("10.0.0.2", "1.2.3.4", ["10.0.0.0/8"]) == (
        "1.2.3.4",
        ["1.2.3.4", "10.0.0.2"],
    )
