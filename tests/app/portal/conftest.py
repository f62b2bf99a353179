from __future__ import annotations

import httpx
import pytest

from app.seed import seed_demo, seed_reference
from app.services import Services


@pytest.fixture
async def demo(services: Services) -> Services:
    """Reference data and the demo residents with their holdings, consents and activity."""
    await seed_reference()
    await seed_demo(services.settings, services.ledger)
    return services


def csrf_from(page: httpx.Response) -> str:
    marker = 'name="csrf_token" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]
