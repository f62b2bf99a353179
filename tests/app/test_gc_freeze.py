"""A served process leaves what start-up made out of full garbage collections
(app.main.freeze_long_lived_objects); an application built by tests does not."""

from __future__ import annotations

import gc

from app.main import create_app
from app.settings import Settings


async def test_a_served_application_freezes_its_start_up_objects(settings: Settings) -> None:
    gc.unfreeze()
    try:
        app = create_app(settings, freeze_start_up=True)
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000
            # The services opened at start-up are frozen: no collection walks them.
            services = app.state.services
            assert all(tracked is not services for tracked in gc.get_objects())
    finally:
        gc.unfreeze()


async def test_an_application_built_for_tests_freezes_nothing(settings: Settings) -> None:
    gc.unfreeze()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
