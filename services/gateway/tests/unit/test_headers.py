"""GW-1: hop-by-hop headers end at the gateway; the client, request id and trace are set
by the gateway."""

from __future__ import annotations

import uuid

from gateway.domain import headers as h
from servicekit.http import client_address


def test_gw1_hop_by_hop_headers_and_those_connection_names_are_stripped() -> None:
    kept = h.end_to_end(
        [
            ("Connection", "keep-alive, X-Private"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("Proxy-Authorization", "Basic x"),
            ("X-Private", "1"),
            ("Authorization", "Bearer t"),
            ("Content-Type", "application/json"),
        ]
    )
    assert kept == [("Authorization", "Bearer t"), ("Content-Type", "application/json")]


def test_gw1_the_client_is_the_peer_whatever_it_writes_in_x_forwarded_for() -> None:
    assert client_address("198.51.100.9", "1.2.3.4", []) == ("198.51.100.9", ["198.51.100.9"])
    assert client_address("198.51.100.9", "1.2.3.4", ["10.0.0.0/8"]) == (
        "198.51.100.9",
        ["198.51.100.9"],
    )


def test_gw1_behind_a_trusted_proxy_the_client_is_the_last_untrusted_address() -> None:
    address, chain = client_address("10.0.0.2", "1.2.3.4, 198.51.100.9, 10.0.0.1", ["10.0.0.0/8"])
    assert address == "198.51.100.9"
    assert chain == ["1.2.3.4", "198.51.100.9", "10.0.0.1", "10.0.0.2"]


def test_gw1_upstream_headers_replace_what_only_the_gateway_may_say() -> None:
    sent = h.upstream_request_headers(
        [
            ("host", "portal.example"),
            ("authorization", "Bearer t"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-request-id", "spoofed"),
            ("traceparent", "00-spoofed"),
            ("connection", "close"),
        ],
        forwarded_for=["198.51.100.9"],
        proto="https",
        host="portal.example",
        rid="rid-1",
        trace={"traceparent": "00-abc-def-01"},
    )
    assert sent == [
        ("host", "portal.example"),
        ("authorization", "Bearer t"),
        ("x-forwarded-for", "198.51.100.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "portal.example"),
        ("x-request-id", "rid-1"),
        ("traceparent", "00-abc-def-01"),
    ]


def test_gw1_a_plausible_request_id_is_kept_anything_else_replaced() -> None:
    assert h.request_id("abc-123_x.y") == "abc-123_x.y"
    for bad in (None, "", "a" * 129, "with space", "new\nline", "ü"):
        uuid.UUID(h.request_id(bad))


def test_gw1_answers_carry_the_request_id_and_no_hop_by_hop_headers() -> None:
    answer = h.client_response_headers(
        [("content-type", "application/json"), ("x-request-id", "other"), ("keep-alive", "5")],
        "rid-1",
    )
    assert answer == [("content-type", "application/json"), ("x-request-id", "rid-1")]


def test_gw1_date_and_server_are_the_gateways_own_not_repeated_from_upstream() -> None:
    answer = h.client_response_headers(
        [("date", "Fri, 27 Nov 2026 13:22:16 GMT"), ("server", "uvicorn"), ("etag", "e1")],
        "rid-1",
    )
    assert answer == [("etag", "e1"), ("x-request-id", "rid-1")]
