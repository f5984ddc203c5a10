"""GW-1: which upstream serves a path; internal routes are never reachable."""

from __future__ import annotations

import pytest
from gateway.config import BLOCKED_PREFIXES, PUBLIC_ROUTES, GatewaySettings
from gateway.domain.routing import RouteTable, Upstream, canonical

IDENTITY = Upstream("identity", ("http://identity",))
CONTRACTS = Upstream("contracts", ("http://contracts",))
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


DEFAULTS = GatewaySettings()
DEFAULT_TABLE = RouteTable(
    {prefix: Upstream(name, DEFAULTS.upstreams[name].instances)
     for prefix, name in DEFAULTS.routes.items()},
    public=DEFAULTS.public_routes,
    blocked=DEFAULTS.blocked_prefixes,
    uploads=DEFAULTS.upload_routes,
)  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "upstream"),
    [
        ("POST", "/claims", "claims"),
        ("GET", "/claims", "claims"),
        ("GET", "/claims/notification-channel", "claims"),
        ("GET", "/claims/CL-1", "claims"),
        ("POST", "/claims/CL-1/documents", "claims"),
        ("GET", "/claims/CL-1/attachments/A-1", "claims"),
        ("PUT", "/claims/CL-1/notification-channel", "claims"),
        ("GET", "/documents", "documents"),
        ("PUT", "/documents/delivery-preference", "documents"),
        ("GET", "/documents/D-1/content", "documents"),
        ("POST", "/documents/D-1/read", "documents"),
        ("POST", "/messages", "documents"),
        ("GET", "/messages/M-1/attachments/A-1", "documents"),
        ("GET", "/contracts/P-1", "contracts"),
        ("GET", "/loyalty/statement", "loyalty"),
        ("GET", "/identity/me", "identity"),
    ],
)
def test_gw1_claims_documents_and_messages_go_to_their_services_by_default(
    method: str, path: str, upstream: str
) -> None:
    """Issue 10 through the gateway: claims (:8005), the mailbox and messages (:8006)."""
    route = DEFAULT_TABLE.resolve(method, path)
    assert route is not None
    assert route.upstream.name == upstream
    assert not route.public
    assert DEFAULTS.upstreams["claims"].url.endswith(":8005")
    assert DEFAULTS.upstreams["documents"].url.endswith(":8006")


@pytest.mark.parametrize(
    "path",
    [
        "/identity/operators/login",
        "/identity/operators",
        "/IDENTITY/Operators/login",
        "/internal/claims/transitions",
        "/internal/documents",
        "/internal/documents/D-1/print",
        "/internal/messages/M-1",
        "/claimsX",
        "/documentsX/x",
        "/messages-internal",
    ],
)
def test_gw1_operator_login_and_internal_routes_of_the_new_services_are_never_routed(
    path: str,
) -> None:
    """Operators log in at the console, never through the customers' front door."""
    for method in ("GET", "POST"):
        assert DEFAULT_TABLE.resolve(method, path) is None
    assert not DEFAULT_TABLE.routed("/identity/operators/login", "identity")


def test_gw1_upload_routes_get_the_larger_body_limit_other_routes_do_not() -> None:
    def upload(method: str, path: str) -> bool:
        route = DEFAULT_TABLE.resolve(method, path)
        assert route is not None
        return route.upload

    assert upload("POST", "/claims")
    assert upload("POST", "/claims/CL-1/documents")
    assert upload("POST", "/messages")
    assert not upload("GET", "/claims")
    assert not upload("POST", "/claims/CL-1/documents/x")
    assert not upload("POST", "/claims/notification-channel")
    assert not upload("POST", "/identity/registrations")
    assert not upload("POST", "/documents/D-1/read")
