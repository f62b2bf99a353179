"""The ASGI entry point for servers (uvicorn, granian): ``app.asgi:app``."""

import os

from app.main import create_app
from app.settings import Settings

app = create_app(Settings.from_env(os.environ), freeze_start_up=True)
