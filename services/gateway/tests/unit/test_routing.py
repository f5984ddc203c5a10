"""GW-1: which upstream serves a path; internal routes are never reachable."""

from __future__ import annotations

import pytest
from gateway.config import BLOCKED_PREFIXES, PUBLIC_ROUTES
from gateway.domain.routing import RouteTable, Upstream, canonical

IDENTITY = Upstream("identity", "http://identity")
CONTRACTS = Upstream("contracts", "http://contracts")
TABLE = RouteTable(
    {"/identity": IDENTITY, "/.well-known/jwks.json": IDENTITY, "/contracts": CONTRACTS},
    public=PUBLIC_ROUTES,
    blocked=BLOCKED_PREFIXES,
)


def upstream_of(path: str, method: str = "GET") -> str | None:
    route = TABLE.resolve(method, path)
    return route.upstream.name if route else None


def test_gw1_a_path_goes_to_the_upstream_of_its_prefix_unchanged() -> None:
    assert upstream_of("/contracts") == "contracts"
    assert upstream_of("/contracts/P-1/bank-details", "PUT") == "contracts"
    assert upstream_of("/identity/me") == "identity"
    assert upstream_of("/.well-known/jwks.json") == "identity"


def test_gw1_a_prefix_matches_whole_segments_only() -> None:
    assert upstream_of("/contractsX") is None
    assert upstream_of("/identity-admin/x") is None


def test_gw1_unrouted_paths_are_not_found() -> None:
    assert upstream_of("/") is None
    assert upstream_of("/loyalty/statement") is None


@pytest.mark.parametrize(
    "path",
    [
        "/internal/upstream/policies",
        "/internal/identity/mtans",
        "/metrics",
        "/asyncapi",
        "/asyncapi.json",
        "/health/ready",
        "/openapi.json",
        "/docs",
        "/INTERNAL/upstream/policies",
    ],
)
def test_gw1_internal_operators_and_document_routes_are_never_routed(path: str) -> None:
    table = RouteTable({"/internal": CONTRACTS, "/metrics": CONTRACTS}, blocked=BLOCKED_PREFIXES)
    assert table.resolve("GET", path) is None
    assert TABLE.resolve("GET", path) is None


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/contracts/../internal/upstream/policies", None),
        ("/contracts/./x", None),
        ("/contracts//x", None),
        ("/contracts/..", None),
        ("/contracts/a\\b", None),
        ("/contracts/a/internal", "/contracts/a%2Finternal"),
        ("/contracts/../x", "/contracts/%2e%2e/x"),
        ("/contracts/a\x00", "/contracts/a%00"),
    ],
)
def test_gw1_paths_that_could_change_meaning_upstream_are_not_found(
    path: str, raw: str | None
) -> None:
    assert TABLE.resolve("GET", path, raw) is None


def test_gw1_canonical_paths_may_have_a_trailing_slash_and_escapes() -> None:
    assert canonical("/contracts/", "/contracts/")
    assert canonical("/contracts/a b", "/contracts/a%20b")


def test_id4_login_registration_and_keys_are_public_everything_else_needs_a_token() -> None:
    assert TABLE.resolve("POST", "/identity/login").public  # type: ignore[union-attr]
    assert TABLE.resolve("POST", "/identity/registrations").public  # type: ignore[union-attr]
    assert TABLE.resolve("GET", "/.well-known/jwks.json").public  # type: ignore[union-attr]
    assert not TABLE.resolve("GET", "/identity/login").public  # type: ignore[union-attr]
    assert not TABLE.resolve("GET", "/identity/me").public  # type: ignore[union-attr]
    assert not TABLE.resolve("POST", "/identity/login/extra").public  # type: ignore[union-attr]
    assert not TABLE.resolve("GET", "/contracts").public  # type: ignore[union-attr]


def test_gw1_the_openapi_merge_keeps_only_what_is_routed_to_that_same_upstream() -> None:
    assert TABLE.routed("/contracts/{policy_id}", "contracts")
    assert not TABLE.routed("/contracts/{policy_id}", "identity")
    assert not TABLE.routed("/internal/upstream/policies", "contracts")
    assert not TABLE.routed("/health/ready", "contracts")


def test_gw1_a_prefix_must_name_a_segment() -> None:
    with pytest.raises(ValueError, match="prefix"):
        RouteTable({"/": CONTRACTS})
