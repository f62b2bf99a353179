"""The Starlette application: routes by audience, error rendering, database lifecycle."""

from __future__ import annotations

import contextlib
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
from app.api import openapi
from app.api import routes as api_routes
from app.audit.views import routes as audit_routes
from app.auth import csrf as auth_csrf
from app.auth import devprovider
from app.auth import routes as auth_routes
from app.auth.sessions import purge_ended_sessions
from app.middleware import LanguageAndSecurity
from app.notifications import NotificationDelivery, background
from app.oauth import server as oauth_server
from app.problems import Problem, from_http_exception, internal_problem, problem_response
from app.services import open_services
from app.settings import Settings
from app.templating import DESIGN_SYSTEM_DIR, make_templates
from app.witnessing import Witness, submit_to_all
from consent.lifecycle import expire_due

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_PREFIXES = ("/api/", "/ledger/", "/oauth/", "/healthz", "/readyz")

log = logging.getLogger("onceonly")


def create_app(settings: Settings, *, manage_services: bool = True) -> Starlette:
    """Build the application for ``settings``.

    With ``manage_services`` the app opens the database and the ledger at start-up and
    closes them at shutdown; tests that open them themselves pass False and set
    ``app.state.services``.
    """
    templates = make_templates(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage_services:
            yield
            return
        services = await open_services(settings)
        app.state.services = services
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
                    yield
        finally:
            await services.close()

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return render_error(request, from_http_exception(exc))

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return render_error(request, exc)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render_error(request, internal_problem())

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
        Mount("/static/app", app=StaticFiles(directory=STATIC_DIR), name="static"),
        *health.routes,
        *ledger_api.routes,
        *api_routes.routes,
        *openapi.routes,
        *oauth_server.routes,
        *(devprovider.mount(settings) if settings.demo else []),
        *auth_routes.routes,
        *audit_routes,
        *portal.routes,
    ]
    if DESIGN_SYSTEM_DIR.is_dir():
        routes.insert(0, Mount("/static/ods", app=StaticFiles(directory=DESIGN_SYSTEM_DIR)))
    https = settings.base_url.startswith("https://")
    form_origins: tuple[str, ...] = ()
    if settings.oidc_issuer and not settings.uses_dev_oidc:
        issuer = urlsplit(settings.oidc_issuer)
        form_origins = (f"{issuer.scheme}://{issuer.netloc}",)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(LanguageAndSecurity, https=https, form_origins=form_origins)],
        exception_handlers={
            HTTPException: on_http_error,
            Problem: on_problem,
            **auth_routes.exception_handlers,
            Exception: on_unexpected,
        },
    )
    app.state.settings = settings
    app.state.templates = templates
    auth_csrf.install(app)
    return app
