from __future__ import annotations

import pytest

from app.keys import pseudonym_key
from app.seed import seed_reference
from app.services import Services
from consent.identity import Pseudonymizer


@pytest.fixture
async def seeded(services: Services) -> Services:
    await seed_reference()
    return services


@pytest.fixture
def people(services: Services) -> Pseudonymizer:
    return Pseudonymizer(pseudonym_key(services.settings))
