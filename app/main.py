"""The Starlette application: routes by audience, error rendering, database lifecycle."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from app import health, ledger_api, portal
from app.alerts import SmtpServer, send_due_alerts
from app.api import audit as audit_api
from app.api import openapi
from app.api import routes as api_routes
from app.audit.views import routes as audit_routes
from app.auth import csrf as auth_csrf
from app.auth import devprovider
from app.auth import routes as auth_routes
from app.auth.sessions import purge_ended_sessions
from app.db import DATABASE_ERRORS, database_unavailable
from app.limits import RequestLimits
from app.metrics import Metrics
from app.middleware import LanguageAndSecurity
from app.notifications import NotificationDelivery, background
from app.oauth import server as oauth_server
from app.problems import (
    Problem,
    from_http_exception,
    internal_problem,
    problem_response,
    unavailable_problem,
)
from app.request_context import REQUEST_ID_HEADER, RequestContext, current_request_id
from app.services import open_services
from app.settings import Settings
from app.templating import DESIGN_SYSTEM_DIR, make_templates
from app.witnessing import Witness, submit_to_all
from consent.lifecycle import expire_due

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_PREFIXES = ("/api/", "/ledger/", "/oauth/", "/healthz", "/readyz")

log = logging.getLogger("onceonly")


def freeze_long_lived_objects() -> None:
    """Leave what start-up made out of the garbage collector's full collections.

    A served process holds some 86,000 objects made at start-up (modules, templates,
    the ORM's and the ledger's state) that live as long as it does. Python's oldest
    generation was collected every second or so under load, and walking all of them
    stopped the event loop for 35 to 47 ms each time: most of the slowest 1% of access
    checks. gc.freeze() moves them to a generation that is never collected, and a full
    collection then takes 1 to 3 ms. Only for a served process: a test process that
    builds many applications would keep every one of them.
    """
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings, *, manage_services: bool = True, freeze_start_up: bool = False
) -> Starlette:
    """Build the application for ``settings``.

    With ``manage_services`` the app opens the database and the ledger at start-up and
    closes them at shutdown; tests that open them themselves pass False and set
    ``app.state.services``. ``freeze_start_up`` is for a served process (app.asgi):
    see freeze_long_lived_objects.
    """
    templates = make_templates(settings)
    metrics = Metrics(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage_services:
            yield
            return
        services = await open_services(settings)
        app.state.services = services
        metrics.watch_ledger(services.ledger)
        try:
            async with httpx.AsyncClient() as http:
                delivery = NotificationDelivery(settings.base_url, services.receipt_key, http)

                async def expire() -> None:
                    await expire_due(services.ledger)

                steps = {"notifications": (1.0, delivery.deliver_due), "expiry": (30.0, expire)}
                steps["sessions"] = (3600.0, purge_ended_sessions)
                if settings.witnesses:
                    witnesses = [Witness.from_setting(*pair) for pair in settings.witnesses]

                    async def witness() -> None:
                        await submit_to_all(services.ledger, witnesses, http)

                    steps["witnesses"] = (5.0, witness)
                if settings.smtp_host:
                    smtp = SmtpServer(
                        settings.smtp_host,
                        settings.smtp_port,
                        settings.smtp_from,
                        settings.smtp_starttls,
                    )

                    async def alert() -> None:
                        await send_due_alerts(services.ledger.db, smtp, settings.base_url)

                    steps["alerts"] = (10.0, alert)
                async with background(steps):
                    if freeze_start_up:
                        freeze_long_lived_objects()
                    yield
        finally:
            await services.close()

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return render_error(request, from_http_exception(exc))

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return render_error(request, exc)

    def database_problem(request: Request, exc: Exception) -> Problem | None:
        # The database is down, full or read-only: a 503 to retry, not a 500 to debug.
        if not database_unavailable(exc):
            return None
        reason = f"{type(exc).__name__}: {str(exc).strip()[:200]}".splitlines()[0]
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, reason)
        return unavailable_problem()

    async def on_database_error(request: Request, exc: Exception) -> Response:
        problem = database_problem(request, exc)
        if problem is None:
            raise exc  # not the database being unavailable: on_unexpected answers it
        return render_error(request, problem)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        problem = database_problem(request, exc)
        if problem is None:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
        response = render_error(request, problem or internal_problem())
        if request_id := current_request_id():  # the 500 is answered outside RequestContext
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    def render_error(request: Request, problem: Problem) -> Response:
        if request.url.path.startswith(API_PREFIXES):
            return problem_response(problem, request)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"problem": problem},
            status_code=problem.status,
            headers=problem.headers,
        )

    routes: list[BaseRoute] = [
        # The ministry API first: the router tries routes in order, and an access check
        # is the call made most often (no other route starts with /api/v1/).
        *api_routes.routes,
        Mount("/static/app", app=StaticFiles(directory=STATIC_DIR), name="static"),
        *health.routes,
        *metrics.routes,
        *ledger_api.routes,
        *audit_api.routes,
        *openapi.routes,
        *oauth_server.routes,
        *(devprovider.mount(settings) if settings.demo else []),
        *auth_routes.routes,
        *audit_routes,
        *portal.routes,
    ]
    if DESIGN_SYSTEM_DIR.is_dir():
        ods = Mount("/static/ods", app=StaticFiles(directory=DESIGN_SYSTEM_DIR))
        routes.insert(len(api_routes.routes), ods)
    https = settings.base_url.startswith("https://")
    form_origins: tuple[str, ...] = ()
    if settings.oidc_issuer and not settings.uses_dev_oidc:
        issuer = urlsplit(settings.oidc_issuer)
        form_origins = (f"{issuer.scheme}://{issuer.netloc}",)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestContext, observe=metrics.observe_request),
            Middleware(LanguageAndSecurity, https=https, form_origins=form_origins),
            Middleware(
                RequestLimits,
                max_body_bytes=settings.limits.max_body_bytes,
                max_form_bytes=settings.limits.max_form_bytes,
                body_timeout=settings.limits.body_timeout,
            ),
        ],
        exception_handlers={
            HTTPException: on_http_error,
            Problem: on_problem,
            **auth_routes.exception_handlers,
            **dict.fromkeys(DATABASE_ERRORS, on_database_error),
            Exception: on_unexpected,
        },
    )
    app.state.settings = settings
    app.state.templates = templates
    app.state.metrics = metrics
    auth_csrf.install(app)
    return app
