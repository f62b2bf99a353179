"""English and French: the language of a request, and translations with Babel catalogs.

Every string a person reads is written in English in the code or templates, wrapped in
``_()``, and translated from ``app/locale/<lang>/LC_MESSAGES/messages.po``. The
language comes from ``?lang=`` (which also sets a cookie), then the cookie, then the
browser's Accept-Language, then English.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po
from babel.support import Format
from starlette.requests import Request

LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "onceonly_lang"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGE_NAMES = {"en": "English", "fr": "Français"}

_current: contextvars.ContextVar[str] = contextvars.ContextVar("lang", default=DEFAULT_LANGUAGE)


@cache
def catalog(lang: str) -> Mapping[str, str]:
    """The translations of ``lang`` (msgid to msgstr); empty for English."""
    path = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if lang == DEFAULT_LANGUAGE or not path.exists():
        return {}
    with path.open("rb") as f:
        parsed = read_po(f, locale=lang)
    out: dict[str, str] = {}
    for message in parsed:
        if not message.id or not message.string or message.fuzzy:
            continue
        if isinstance(message.id, str):
            out[message.id] = str(message.string)
        else:
            # Plural forms are stored under "<singular>\x00<form number>".
            for number, form in enumerate(message.string):
                out[f"{message.id[0]}\x00{number}"] = str(form)
    return out


def current_language() -> str:
    return _current.get()


def set_language(lang: str) -> contextvars.Token[str]:
    return _current.set(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)


def N_(message: str) -> str:
    """Mark a string for translation without translating it yet (translate with ``_``)."""
    return message


def reset_language(token: contextvars.Token[str]) -> None:
    _current.reset(token)


def gettext(message: str, **values: object) -> str:
    """``message`` in the current language, with ``%(name)s`` values filled in."""
    text = catalog(current_language()).get(message, message)
    return text % values if values else text


def ngettext(singular: str, plural: str, n: int, **values: object) -> str:
    """The singular or plural form for ``n`` in the current language (``%(num)s`` is n)."""
    values.setdefault("num", n)
    lang = current_language()
    # English: one is singular; French: zero and one are singular.
    form = 0 if (n == 1 if lang == "en" else n <= 1) else 1
    text = catalog(lang).get(f"{singular}\x00{form}") or (singular if form == 0 else plural)
    return text % values


def language_of(request: Request) -> str:
    """The language a request asks for (query, cookie, Accept-Language, default)."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    cookie = request.cookies.get(LANGUAGE_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    return accepted_language(request.headers.get("accept-language", ""))


def accepted_language(header: str) -> str:
    """The first of our languages an Accept-Language header names, else the default."""
    for part in header.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


def other_language(lang: str) -> str:
    return "fr" if lang == "en" else "en"


def formatter(lang: str) -> Format:
    """Dates and numbers in the conventions of ``lang`` (Canadian English or French)."""
    return Format(f"{lang}_CA")
