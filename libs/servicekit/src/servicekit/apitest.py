"""Property-based API tests for the services' test suites: schemathesis against an app's
own OpenAPI document.

Every operation gets a few generated requests (valid ones, and invalid ones unless
`negative=False`), each answer is checked: no 5xx, a documented status, the documented
content type, a body matching the documented schema. The run is bounded by the number of
examples per operation and deterministic (derandomised), so it fits a unit or integration
suite. Nothing in its verdict depends on time: a slow machine makes it slower, never red
(speed is the benchmarks' business); only a request that hangs for `REQUEST_TIMEOUT_SECONDS`
fails, as "No answer":

    def test_the_api_keeps_its_openapi_promises() -> None:
        assert_api_conforms(app, auth=lambda method, path: headers_for(path))

`target` is an ASGI app (run in-process) or the base URL of a running service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]

# Extra headers for a request, e.g. {"Authorization": ...}; given the method and the path
# template (`/contracts/{policy_id}`), so customer and internal routes can differ.
AuthHeaders = Callable[[str, str], Mapping[str, str]]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# A guard against a hanging server, not a speed limit: far beyond any answer's time.
REQUEST_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class ApiFailure:
    operation: str  # "GET /things/{thing_id}"
    title: str
    message: str
    reproduce: str  # a curl command

    def __str__(self) -> str:
        details = "\n".join(f"    {line}" for line in self.message.strip().splitlines())
        return f"{self.operation}: {self.title}\n{details}\n    reproduce: {self.reproduce}"


class ApiConformanceError(AssertionError):
    def __init__(self, failures: list[ApiFailure]) -> None:
        self.failures = failures
        listed = "\n".join(f"- {failure}" for failure in failures)
        super().__init__(f"{len(failures)} API failure(s):\n{listed}")


@dataclass
class _Run:
    checks: list[Any]
    base_url: str | None
    auth: AuthHeaders | None
    failures: dict[tuple[str, str], ApiFailure] = field(default_factory=dict)

    def exercise(self, case: AnyCase) -> None:
        method, path = case.operation.method.upper(), case.operation.path
        headers = dict(self.auth(method, path)) if self.auth else {}
        timeout = REQUEST_TIMEOUT_SECONDS
        try:
            response = case.call(base_url=self.base_url, headers=headers, timeout=timeout)
        except requests.Timeout:
            self._record(case, headers, "No answer", f"none within {timeout:.0f} s")
            return
        answered = f"answered {response.status_code}: {response.text[:300]}"
        try:
            case.validate_response(response, checks=self.checks, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                self._record(case, headers, failure.title, f"{failure.message}\n{answered}")
        except Failure as failure:
            self._record(case, headers, failure.title, f"{failure.message}\n{answered}")

    def _record(self, case: AnyCase, headers: Mapping[str, str], title: str, message: str) -> None:
        label = f"{case.operation.method.upper()} {case.operation.path}"
        if (label, title) not in self.failures:
            curl = case.as_curl_command(headers=dict(headers), base_url=self.base_url)
            self.failures[label, title] = ApiFailure(label, title, message, curl)


def api_failures(
    target: Any,
    *,
    auth: AuthHeaders | None = None,
    openapi_path: str = "/openapi.json",
    max_examples: int = 12,
    negative: bool = True,
    include: Callable[[str, str], bool] | None = None,
) -> list[ApiFailure]:
    """What the API does that its OpenAPI document does not promise, one entry per
    operation and kind of failure. `include(method, path)` narrows the operations."""
    schema, base_url = _load(target, openapi_path)
    run = _Run(CHECKS, base_url, auth)
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negative else [])
    operations = list(_operations(schema.get_all_operations(), include))
    for operation in operations:
        for mode in modes:
            _explore(operation, mode, run, max_examples)
    if not operations:  # green must mean something was tested
        return [ApiFailure("*", "Nothing tested", "the document has no operation to test", "")]
    return list(run.failures.values())


def assert_api_conforms(target: Any, **options: Any) -> None:
    """`api_failures`, raising ApiConformanceError with a readable list when there are any."""
    failures = api_failures(target, **options)
    if failures:
        raise ApiConformanceError(failures)


def _load(target: Any, openapi_path: str) -> tuple[Any, str | None]:
    if isinstance(target, str):
        base_url = target.rstrip("/")
        return schemathesis.openapi.from_url(base_url + openapi_path), base_url
    return schemathesis.openapi.from_asgi(openapi_path, _AsServed(target)), None


class _AsServed:
    """The app as a server runs it: an exception after the app answered (Starlette
    re-raises after its 500 problem) is logged by the server, not seen by the client;
    one before it answered becomes a bare 500. In-process, the exception would otherwise
    reach the test instead of the answer the client really gets."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if not started:
                await _bare_500(send)


async def _bare_500(send: Any) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": b"Internal Server Error"})


def _operations(
    results: Iterable[Any], include: Callable[[str, str], bool] | None
) -> Iterable[Operation]:
    for result in results:
        operation: Operation = result.ok()  # an unusable schema is itself a failure
        if include is None or include(operation.method.upper(), operation.path):
            yield operation


def _explore(operation: Operation, mode: GenerationMode, run: _Run, max_examples: int) -> None:
    """Failures are recorded, not raised, so that Hypothesis goes on through every example
    (no shrinking: the curl command of the first failing example is the reproduction)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    def explore(case: AnyCase) -> None:
        run.exercise(case)

    configured = hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )(explore)
    with suppress(Unsatisfiable):  # nothing to make invalid: no parameters, no body
        configured()
