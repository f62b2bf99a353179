"""Citizen portal pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consent.models import Ministry


async def home(request: Request) -> Response:
    ministries = await Ministry.all().prefetch_related("systems")
    return request.app.state.templates.TemplateResponse(
        request,
        "portal/home.html",
        {"ministries": ministries, "settings": request.app.state.settings},
    )


routes = [Route("/", home, methods=["GET"], name="home")]
