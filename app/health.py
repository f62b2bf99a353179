"""``/healthz`` (the process answers) and ``/readyz`` (the database answers and is migrated)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tortoise.connection import get_connection

from app.schema import pending_migrations


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    try:
        await get_connection("default").execute_query("SELECT 1")
    except Exception:
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    pending = await pending_migrations()
    if pending:
        return JSONResponse(
            {"status": "unavailable", "database": "ok", "pending_migrations": pending},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ok", "database": "ok", "migrations": "applied"})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
