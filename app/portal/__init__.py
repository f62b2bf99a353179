"""The citizen portal: server-rendered pages that work without JavaScript."""

from app.portal.views import routes

__all__ = ["routes"]
