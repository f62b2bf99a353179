"""English and French: every string a person reads has a French translation, and the
language can be chosen on any page."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from babel.messages.extract import extract_from_dir

from app import i18n

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extracted_messages() -> set[str | tuple[str, ...]]:
    method_map = [("app/**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options, keywords=keywords
    ):
        found.add(message)
    return found


def test_every_string_has_a_french_translation_with_the_same_placeholders() -> None:
    french = i18n.catalog("fr")
    messages = extracted_messages()
    assert len(messages) > 100
    missing = []
    for message in messages:
        if isinstance(message, tuple):
            forms = [french.get(f"{message[0]}\x00{n}") for n in (0, 1)]
            if not all(forms):
                missing.append(message)
            continue
        translation = french.get(message)
        if not translation:
            missing.append(message)
            continue
        assert set(PLACEHOLDER.findall(translation)) == set(PLACEHOLDER.findall(message)), message
    assert missing == [], f"untranslated: {missing}"


async def test_language_switch_keeps_the_page(client: httpx.AsyncClient) -> None:
    english = await client.get("/no-such-page?x=1")
    assert english.status_code == 404
    assert '<html lang="en">' in english.text
    assert 'href="/no-such-page?x=1&amp;lang=fr"' in english.text
    french = await client.get("/no-such-page?x=1&lang=fr")
    assert '<html lang="fr">' in french.text
    assert "Page introuvable" in french.text
    assert "onceonly_lang=fr" in french.headers["set-cookie"]
    remembered = await client.get("/no-such-page")
    assert '<html lang="fr">' in remembered.text
    client.cookies.clear()
    assert '<html lang="en">' in (await client.get("/no-such-page")).text
    browser = await client.get("/no-such-page", headers={"Accept-Language": "fr-CA,fr;q=0.9"})
    assert '<html lang="fr">' in browser.text


async def test_security_headers_on_pages(client: httpx.AsyncClient) -> None:
    r = await client.get("/no-such-page")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in r.text and " style=" not in r.text
