"""What the gateway forwards and answers in headers (GW-1). Pure: no I/O.

- Hop-by-hop headers (RFC 9110 section 7.6.1: Connection, the ones it names, Keep-Alive,
  Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade) end at the gateway in both directions.
- `X-Forwarded-For` names the client as `servicekit.http.client_address` reads it (the
  gateway and identity share it); `X-Forwarded-Proto`/`-Host` say how the client called;
  `Forwarded` and `X-Real-IP` from clients are dropped.
- `X-Request-ID` is kept when it is a plausible id (printable token, at most 128
  characters), else replaced with a fresh one; the same id goes upstream and back.
- `Date` and `Server` of an upstream's answer end at the gateway: its own HTTP server
  writes them (once; the README's curl journey showed them twice).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    }
)  # fmt: skip
# Set by the gateway alone: a client's own values are dropped.
_GATEWAY_OWNED = frozenset(
    {
        "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip",
        "x-request-id", "traceparent", "tracestate",
    }
)  # fmt: skip
REQUEST_ID_HEADER = "X-Request-ID"
# Written by the gateway's HTTP server on every answer.
_SERVER_OWNED = frozenset({"date", "server", "x-request-id"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

Headers = Sequence[tuple[str, str]]


def request_id(offered: str | None) -> str:
    """The client's id when it looks like one, else a fresh UUID."""
    if offered and _REQUEST_ID.match(offered):
        return offered
    return str(uuid.uuid4())


def _connection_named(headers: Headers) -> set[str]:
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


def end_to_end(headers: Headers) -> list[tuple[str, str]]:
    """`headers` without the hop-by-hop ones."""
    drop = HOP_BY_HOP | _connection_named(headers)
    return [(name, value) for name, value in headers if name.lower() not in drop]


def upstream_request_headers(
    headers: Headers,
    *,
    forwarded_for: Sequence[str],
    proto: str,
    host: str | None,
    rid: str,
    trace: dict[str, str],
) -> list[tuple[str, str]]:
    """The client's end-to-end headers (Host and Authorization included: services verify
    tokens themselves) plus what the gateway says about the request."""
    kept = [(n, v) for n, v in end_to_end(headers) if n.lower() not in _GATEWAY_OWNED]
    kept.append(("x-forwarded-for", ", ".join(forwarded_for)))
    kept.append(("x-forwarded-proto", proto))
    if host:
        kept.append(("x-forwarded-host", host))
    kept.append(("x-request-id", rid))
    kept.extend((name, value) for name, value in trace.items() if name in _GATEWAY_OWNED)
    return kept


def client_response_headers(headers: Headers, rid: str) -> list[tuple[str, str]]:
    """An upstream's end-to-end response headers, with the request's id."""
    kept = [(n, v) for n, v in end_to_end(headers) if n.lower() not in _SERVER_OWNED]
    kept.append(("x-request-id", rid))
    return kept
