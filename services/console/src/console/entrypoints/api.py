"""`create_app(service)`: the operators' web page and its JSON endpoints (OPS-1).

Everything under /console needs an operator token (identity: operator audience,
`role: operator`, second factor) from the `portal_console` cookie the login page sets
(HttpOnly, SameSite=Strict, path /console) or an `Authorization: Bearer` header. No token
or an invalid one: 401; a valid token that is not an operator's (a customer's): 403. JSON
routes answer RFC 9457 problems; pages show the login page (401) or a refusal (403).
"""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from servicekit.auth import Unauthenticated
from servicekit.http import Problem, declare_problems, problems
from servicekit.http import create_app as servicekit_app

from console.adapters.kafka import ReplayRefused
from console.adapters.services import UpstreamError
from console.auth import NotAnOperator, Operator
from console.bootstrap import Service
from console.handlers import CHARTS, JOB_KINDS

COOKIE = "portal_console"
PACKAGE = Path(__file__).resolve().parents[1]
templates = Jinja2Templates(directory=str(PACKAGE / "templates"))


class PageRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token
    return request.cookies.get(COOKIE) or None


async def _verify(request: Request) -> Operator:
    token = _token(request)
    if not token:
        raise PageRefused(401, "Bitte melden Sie sich als Betreiber an.")
    try:
        return await _service(request).verifier.verify(token)
    except Unauthenticated:
        raise PageRefused(401, "Bitte melden Sie sich erneut an.") from None
    except NotAnOperator:
        raise PageRefused(403, "Die Konsole ist nur für Betreiber mit zweitem Faktor.") from None


async def api_operator(request: Request) -> Operator:
    """JSON routes: 401 / 403 problems."""
    try:
        return await _verify(request)
    except PageRefused as refused:
        title = "Unauthorized" if refused.status == 401 else "Forbidden"
        raise Problem(
            refused.status,
            title,
            refused.detail,
            type_=f"urn:portal:problem:console:{title.lower()}",
        ) from None


declare_problems(api_operator, 401, 403)
ApiOperator = Annotated[Operator, Depends(api_operator)]
PageOperator = Annotated[Operator, Depends(_verify)]


def _page(
    request: Request, name: str, operator: Operator | None, status: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"operator": operator, **context}, status_code=status
    )


class ReplayIn(BaseModel):
    refs: list[str] = Field(min_length=1, max_length=500)


class NotifierReplayIn(BaseModel):
    message_keys: list[str] = Field(min_length=1, max_length=500)


class JobIn(BaseModel):
    kind: str = Field(pattern="^(monthly|january|expiry)$")
    business_date: date
    confirm: bool = Field(description="must be true: the operator confirmed the run")


api = APIRouter(prefix="/console/api", tags=["console"])
pages = APIRouter(prefix="/console", include_in_schema=False)


@api.get("/overview")
async def overview(request: Request, operator: ApiOperator) -> dict[str, Any]:
    return await _service(request).console.overview()


@api.get("/series/{name}", responses=problems(404))
async def series(name: str, request: Request, operator: ApiOperator) -> dict[str, Any]:
    if name not in CHARTS:
        raise Problem(404, "Not Found", f"no chart {name!r}")
    return await _service(request).console.series(name)


@api.get("/dead-letters")
async def dead_letters(
    request: Request, operator: ApiOperator, topic: str | None = None
) -> list[dict[str, Any]]:
    return await _service(request).console.dead_letters(topic)


@api.post("/dead-letters/replay")
async def replay(body: ReplayIn, request: Request, operator: ApiOperator) -> list[dict[str, Any]]:
    results = await _service(request).console.replay(body.refs, operator)
    return [r.__dict__ for r in results]


@api.get("/notifier/dead-letters", responses=problems(502))
async def notifier_dead_letters(request: Request, operator: ApiOperator) -> list[dict[str, Any]]:
    letters, error = await _service(request).console.notifier_dead_letters()
    if error is not None:
        raise Problem(502, "Bad Gateway", error)
    return letters


@api.post("/notifier/replay")
async def notifier_replay(
    body: NotifierReplayIn, request: Request, operator: ApiOperator
) -> list[dict[str, Any]]:
    results = await _service(request).console.notifier_replay(body.message_keys, operator)
    return [r.__dict__ for r in results]


@api.get("/customers/{customer_id}/history", responses=problems(422))
async def history(
    customer_id: str,
    request: Request,
    operator: ApiOperator,
    reason: Annotated[str, Query(min_length=3, max_length=500)],
) -> list[dict[str, Any]]:
    entries = await _service(request).console.customer_history(customer_id, reason, operator)
    return [e.__dict__ for e in entries]


@api.get("/traces/{wanted}")
async def trace(wanted: str, request: Request, operator: ApiOperator) -> list[dict[str, Any]]:
    return [s.__dict__ for s in _service(request).console.trace(wanted)]


@api.get("/lag")
async def lag(request: Request, operator: ApiOperator) -> list[dict[str, Any]]:
    return [g.__dict__ | {"lag": g.lag} for g in await _service(request).console.kafka.lag()]


@api.post("/jobs", responses=problems(422, 502))
async def run_job(body: JobIn, request: Request, operator: ApiOperator) -> dict[str, Any]:
    if not body.confirm:
        raise Problem(422, "Unprocessable Content", "confirm the run (confirm: true)")
    try:
        return await _service(request).console.run_job(body.kind, body.business_date, operator)
    except UpstreamError as error:
        raise Problem(422 if error.status == 422 else 502, "Job refused", error.detail) from None


# ---------------------------------------------------------------------- pages


@pages.get("/login")
async def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html", None)


@pages.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    otp: Annotated[str, Form(max_length=10)],
) -> Response:
    service = _service(request)
    try:
        answer = await service.http.post(
            f"{service.settings.identity_url}/identity/operators/login",
            json={"username": username, "password": password, "otp": otp},
            timeout=30.0,
        )
    except httpx.HTTPError:
        return _page(
            request, "login.html", None, 503, error="Der Anmeldedienst ist nicht erreichbar."
        )
    if answer.status_code != 200:
        detail = "Anmeldung fehlgeschlagen."
        if answer.status_code == 429:
            detail = "Zu viele Fehlversuche. Bitte warten Sie."
        return _page(request, "login.html", None, 401, error=detail)
    body = answer.json()
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(
        COOKIE,
        body["access_token"],
        max_age=int(body.get("expires_in", 900)),
        httponly=True,
        secure=service.settings.cookie_secure,
        samesite="strict",
        path="/console",
    )
    return response


@pages.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@pages.get("/")
async def overview_page(request: Request, operator: PageOperator) -> HTMLResponse:
    settings = _service(request).settings
    return _page(
        request,
        "overview.html",
        operator,
        page="overview",
        refresh=settings.refresh_seconds,
        charts=list(CHARTS),
        chart_titles=CHARTS,
    )


@pages.get("/dead-letters")
async def dead_letters_page(request: Request, operator: PageOperator) -> HTMLResponse:
    console = _service(request).console
    letters = await console.dead_letters()
    notifier, error = await console.notifier_dead_letters()
    return _page(
        request,
        "dead_letters.html",
        operator,
        page="dead-letters",
        letters=letters,
        notifier=notifier,
        notifier_error=error,
    )


@pages.get("/dead-letters/{ref}")
async def dead_letter_page(ref: str, request: Request, operator: PageOperator) -> HTMLResponse:
    try:
        letter = await _service(request).console.dead_letter(ref)
    except (ReplayRefused, ValueError):
        return _page(
            request, "refused.html", operator, 404, detail="Diesen Dead Letter gibt es nicht."
        )
    event_json = (
        json.dumps(letter["event"], indent=2, ensure_ascii=False) if letter["event"] else ""
    )
    return _page(
        request, "dead_letter.html", operator, page="dead-letters", d=letter, event_json=event_json
    )


def _confirmed(confirm: str | None) -> None:
    if confirm != "yes":
        raise Problem(422, "Unprocessable Content", "Bitte bestätigen Sie den Vorgang.")


@pages.post("/dead-letters/replay")
async def replay_page(
    request: Request,
    operator: PageOperator,
    ref: Annotated[list[str], Form()],
    confirm: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    _confirmed(confirm)
    results = await _service(request).console.replay(ref, operator)
    return _page(request, "replayed.html", operator, page="dead-letters", results=results)


@pages.post("/notifier/replay")
async def notifier_replay_page(
    request: Request,
    operator: PageOperator,
    key: Annotated[list[str], Form()],
    confirm: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    _confirmed(confirm)
    results = await _service(request).console.notifier_replay(key, operator)
    return _page(request, "replayed.html", operator, page="dead-letters", results=results)


@pages.get("/customers")
async def customers_page(request: Request, operator: PageOperator) -> HTMLResponse:
    return _page(request, "customers.html", operator, page="customers", entries=None)


@pages.post("/customers")
async def customers_lookup(
    request: Request,
    operator: PageOperator,
    customer_id: Annotated[str, Form(min_length=1, max_length=200)],
    reason: Annotated[str, Form(max_length=500)],
) -> HTMLResponse:
    try:
        entries = await _service(request).console.customer_history(customer_id, reason, operator)
    except ValueError as error:
        return _page(
            request,
            "customers.html",
            operator,
            422,
            page="customers",
            entries=None,
            customer_id=customer_id,
            reason=reason,
            error=str(error),
        )
    return _page(
        request,
        "customers.html",
        operator,
        page="customers",
        entries=entries,
        customer_id=customer_id,
        reason=reason,
    )


@pages.get("/traces")
async def traces_page(
    request: Request, operator: PageOperator, q: str | None = None
) -> HTMLResponse:
    console = _service(request).console
    spans = console.trace(q) if q else None
    return _page(
        request,
        "traces.html",
        operator,
        page="traces",
        q=q,
        spans=spans,
        configured=console.trace_file is not None,
    )


@pages.get("/jobs")
async def jobs_page(request: Request, operator: PageOperator) -> HTMLResponse:
    return _page(request, "jobs.html", operator, page="jobs")


@pages.post("/jobs")
async def jobs_run(
    request: Request,
    operator: PageOperator,
    kind: Annotated[str, Form()],
    business_date: Annotated[date, Form()],
    confirm: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    if kind not in JOB_KINDS or confirm != "yes":
        return _page(
            request,
            "jobs.html",
            operator,
            422,
            page="jobs",
            error="Bitte Lauf wählen und bestätigen.",
        )
    try:
        result = await _service(request).console.run_job(kind, business_date, operator)
    except UpstreamError as error:
        return _page(request, "jobs.html", operator, 422, page="jobs", error=error.detail)
    text = f"{kind} für {business_date}: {result.get('announced')} Ereignisse angekündigt"
    return _page(request, "jobs.html", operator, page="jobs", result=text)


def _plotly_js() -> Path:
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def create_app(service: Service) -> FastAPI:
    app = servicekit_app("console", readiness=[service.database_ready])
    app.state.service = service

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageRefused)
        if exc.status == 401:
            return _page(request, "login.html", None, 401, error=exc.detail)
        return _page(request, "refused.html", None, exc.status, detail=exc.detail)

    app.add_exception_handler(PageRefused, on_refused)

    @app.get("/console/vendor/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> FileResponse:
        """plotly.js as the installed plotly package ships it (no CDN, no build step)."""
        return FileResponse(
            _plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    app.include_router(api)
    app.include_router(pages)
    app.mount("/console/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    return app
