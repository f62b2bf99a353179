"""Configuration for Tortoise's own ``tortoise`` command (``makemigrations``).

Named in ``[tool.tortoise]`` in pyproject.toml. Onceonly itself never imports this:
it builds its configuration from the settings object it is given.
"""

import os

from app.db import tortoise_config
from app.settings import Settings

TORTOISE_ORM = tortoise_config(Settings.from_env(os.environ))
