"""Fixtures for API tests: seeded reference data and real tokens from /oauth/token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from app.oauth.clients import register_client
from app.seed import seed_reference
from app.services import Services

ALL_SCOPES = [
    "holdings:write",
    "holdings:read",
    "consent:request",
    "consent:read",
    "access:check",
    "notifications:read",
]

TokenFactory = Callable[..., Awaitable[dict[str, str]]]


@pytest.fixture
async def seeded(services: Services) -> Services:
    await seed_reference()
    return services


@pytest.fixture
def auth(client: httpx.AsyncClient, seeded: Services) -> TokenFactory:
    """Register a client for a ministry system and return Authorization headers for it,
    obtained through the real token endpoint."""

    async def make(
        ministry: str = "MTO",
        system: str = "driver-licensing",
        scopes: list[str] | None = None,
        webhook_url: str | None = None,
    ) -> dict[str, str]:
        registered, secret = await register_client(
            ministry,
            system,
            f"{system} test client",
            "client_secret_basic",
            scopes or ALL_SCOPES,
            webhook_url=webhook_url,
        )
        response = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(registered.client_id, secret or ""),
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return make
