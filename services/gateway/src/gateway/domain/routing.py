"""Which upstream serves a path, and whether it needs a token (GW-1). Pure: no I/O.

A path is forwarded only when it is canonical (no dot segments, no empty segments, no
encoded slashes, backslashes or dots, no control characters), is not under a blocked
prefix (internal endpoints, metrics, documents, health) and starts with a routed prefix
as a whole segment. Everything else is "not found": the gateway does not tell an
internal route from a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# %2F %5C %2E (any case) and %00: decoding them upstream could change the route.
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    instances: tuple[str, ...]  # base URLs


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    upstream: Upstream
    public: bool
    # A route that takes files (claims' attachments, messages): the larger body limit.
    upload: bool = False


def canonical(path: str, raw_path: str) -> bool:
    """`path` is the decoded path, `raw_path` what the client sent (without the query)."""
    if not path.startswith("/") or "\\" in path or _CONTROL.search(path):
        return False
    if _ENCODED_SEPARATOR.search(raw_path):
        return False
    segments = path.split("/")[1:]
    # "/" alone is fine; elsewhere an empty segment is "//" or a trailing slash.
    if path != "/" and any(s == "" for s in segments[:-1]):
        return False
    return not any(s in {".", ".."} for s in segments)


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


class RouteTable:
    def __init__(
        self,
        routes: Mapping[str, Upstream],
        public: Iterable[str] = (),
        blocked: Iterable[str] = (),
        uploads: Iterable[str] = (),
    ) -> None:
        for prefix in routes:
            if not prefix.startswith("/") or prefix == "/":
                raise ValueError(f"a route prefix starts with / and names a segment: {prefix!r}")
        # Longest prefix first: "/identity/admin" before "/identity".
        self._routes = sorted(routes.items(), key=lambda item: len(item[0]), reverse=True)
        self._public = {_public_key(entry) for entry in public}
        self._blocked = [b.rstrip("/").lower() for b in blocked]
        self._uploads = [_upload_pattern(entry) for entry in uploads]

    def resolve(self, method: str, path: str, raw_path: str | None = None) -> Route | None:
        """The route for a request, or None (answered 404)."""
        if not canonical(path, path if raw_path is None else raw_path):
            return None
        lowered = path.lower()
        if any(_under(lowered, blocked) for blocked in self._blocked):
            return None
        for prefix, upstream in self._routes:
            if _under(path, prefix):
                public = (method.upper(), path.rstrip("/") or "/") in self._public
                upload = any(
                    m == method.upper() and p.fullmatch(path.rstrip("/") or "/")
                    for m, p in self._uploads
                )
                return Route(prefix, upstream, public, upload)
        return None

    @property
    def upstreams(self) -> dict[str, Upstream]:
        return {upstream.name: upstream for _, upstream in self._routes}

    def routed(self, path: str, upstream: str) -> bool:
        """An upstream's own path that this table forwards to that same upstream (the
        combined OpenAPI keeps only those)."""
        route = self.resolve("GET", _template_free(path))
        return route is not None and route.upstream.name == upstream

    def is_public(self, method: str, path: str) -> bool:
        return (method.upper(), path) in self._public


def _public_key(entry: str) -> tuple[str, str]:
    method, _, path = entry.strip().partition(" ")
    if not path.startswith("/"):
        raise ValueError(f"a public route is 'METHOD /path': {entry!r}")
    return method.upper(), path.strip().rstrip("/") or "/"


def _upload_pattern(entry: str) -> tuple[str, re.Pattern[str]]:
    """`POST /claims/*/documents`: `*` stands for exactly one path segment."""
    method, path = _public_key(entry)
    segments = [r"[^/]+" if s == "*" else re.escape(s) for s in path.split("/")]
    return method, re.compile("/".join(segments))


def _template_free(path: str) -> str:
    """`/contracts/{policy_id}` -> `/contracts/x`: OpenAPI templates as a concrete path."""
    return re.sub(r"\{[^}/]*\}", "x", path)
