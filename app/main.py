"""The Starlette application: routes by audience, error rendering, database lifecycle."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from app import health, ledger_api, portal
from app.api import openapi
from app.api import routes as api_routes
from app.notifications import NotificationDelivery, background
from app.oauth import server as oauth_server
from app.problems import Problem, from_http_exception, internal_problem, problem_response
from app.services import open_services
from app.settings import Settings
from consent.lifecycle import expire_due

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
API_PREFIXES = ("/api/", "/ledger/", "/oauth/", "/healthz", "/readyz")

log = logging.getLogger("onceonly")


def create_app(settings: Settings, *, manage_services: bool = True) -> Starlette:
    """Build the application for ``settings``.

    With ``manage_services`` the app opens the database and the ledger at start-up and
    closes them at shutdown; tests that open them themselves pass False and set
    ``app.state.services``.
    """
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

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
            {"problem": problem, "settings": settings},
            status_code=problem.status,
            headers=problem.headers,
        )

    routes: list[Route] = [
        *health.routes,
        *ledger_api.routes,
        *api_routes.routes,
        *openapi.routes,
        *oauth_server.routes,
        *portal.routes,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: on_http_error,
            Problem: on_problem,
            Exception: on_unexpected,
        },
    )
    app.state.settings = settings
    app.state.templates = templates
    return app
