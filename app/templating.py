"""The Jinja2 environment: translations, language switch links and formatting helpers."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from app import i18n
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
DESIGN_SYSTEM_DIR = (
    ROOT / "node_modules" / "@ongov" / "ontario-design-system-global-styles" / "dist"
)


def make_templates(settings: Settings) -> Jinja2Templates:
    """Templates with gettext installed (``_()`` and ``{% trans %}``) for the request's
    language, and helpers every page uses."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
    )
    templates = Jinja2Templates(env=env)
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(
        settings=settings,
        lang=i18n.current_language,
        other_lang=lambda: i18n.other_language(i18n.current_language()),
        language_name=lambda code: i18n.LANGUAGE_NAMES[code],
        design_system=DESIGN_SYSTEM_DIR.is_dir(),
        switch_language_url=switch_language_url,
        format_date=format_date,
        format_datetime=format_datetime,
        label=label,
        format_duration=format_duration,
    )
    return templates


@pass_context
def switch_language_url(context: dict, lang: str) -> str:
    """The current page in ``lang``: same path and query, with ``lang`` replaced."""
    request: Request = context["request"]
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    query.append(("lang", lang))
    return f"{request.url.path}?{urlencode(query)}"


def format_date(value: date | datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return i18n.formatter(i18n.current_language()).date(value, format="long")


def format_datetime(value: datetime | None) -> str:
    if value is None:
        return ""
    return i18n.formatter(i18n.current_language()).datetime(value, format="medium")


def label(row: object) -> str:
    """The name of a ministry, system, category or purpose in the current language."""
    lang = i18n.current_language()
    for field in (f"name_{lang}", f"label_{lang}", f"title_{lang}", "name_en", "label_en"):
        value = getattr(row, field, None)
        if value:
            return str(value)
    return str(getattr(row, "code", row))


_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


def format_duration(value: str) -> str:
    """An ISO 8601 duration such as ``P7Y`` in words ("7 years", "7 ans")."""
    match = _DURATION.match(value or "")
    if not match or not any(match.groups()):
        return value
    years, months, weeks, days = (int(g) if g else 0 for g in match.groups())
    parts = []
    if years:
        parts.append(i18n.ngettext("%(num)s year", "%(num)s years", years))
    if months:
        parts.append(i18n.ngettext("%(num)s month", "%(num)s months", months))
    if weeks:
        parts.append(i18n.ngettext("%(num)s week", "%(num)s weeks", weeks))
    if days:
        parts.append(i18n.ngettext("%(num)s day", "%(num)s days", days))
    return ", ".join(parts)
