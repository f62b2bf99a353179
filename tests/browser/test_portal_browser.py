"""The portal in a real browser: the main journey by keyboard only, and axe-core on
every page in English and French (WCAG 2.0 A and AA rules). Screenshots are kept in
test-artifacts/browser/."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ARTIFACTS, AXE

pytestmark = pytest.mark.browser


async def tab_to(page, pattern: str, limit: int = 40) -> str:
    """Press Tab until the focused element's text matches ``pattern``; return the text."""
    wanted = re.compile(pattern)
    for _ in range(limit):
        await page.keyboard.press("Tab")
        text = await page.evaluate(
            "() => (document.activeElement.innerText || document.activeElement.value "
            "|| document.activeElement.getAttribute('aria-label') || '').trim()"
        )
        if wanted.search(text):
            return text
    raise AssertionError(f"no focusable element matching {pattern!r} by keyboard")


async def sign_in_by_keyboard(page, who: str = "Alex") -> None:
    await page.goto("/")
    await tab_to(page, r"^(Sign in|Se connecter)$")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/dev-oidc/authorize"))
    # Tab into the radio group (it takes focus on its first person); arrows move on.
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await page.evaluate("() => document.activeElement.type === 'radio'"):
            break
    for _ in range(6):
        label = await page.evaluate(
            "() => document.querySelector(`label[for='${document.activeElement.id}']`)"
            "?.innerText || ''"
        )
        if who in label:
            break
        await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Space")
    await tab_to(page, r"^(Sign in|Se connecter)$")
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    await page.wait_for_load_state()
    assert "/dev-oidc/" not in page.url, await page.locator("main").inner_text()


async def test_main_journey_by_keyboard_only(browser_page) -> None:
    page = browser_page
    await sign_in_by_keyboard(page)
    assert await page.locator("h1").inner_text() == "My data"
    await page.screenshot(path=str(ARTIFACTS / "home-en.png"), full_page=True)
    await tab_to(page, r"^Withdraw this consent$")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/withdraw$"))
    await page.screenshot(path=str(ARTIFACTS / "withdraw-en.png"), full_page=True)
    await tab_to(page, r"^Yes, withdraw my consent$")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/consents\?withdrawn="))
    status = await page.locator("[role=status]").inner_text()
    assert "withdrawn" in status
    await tab_to(page, r"^Activity$")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/activity"))
    assert "You withdrew your consent" in await page.locator("main").inner_text()
    await page.screenshot(path=str(ARTIFACTS / "activity-en.png"), full_page=True)


PAGES = [
    "/",
    "/requests",
    "/consents",
    "/activity",
    "/alerts",
    "/verify",
    "/api/v1/docs",
    "/no-such-page",
]


@pytest.mark.parametrize("lang", ["en", "fr"])
async def test_axe_finds_no_violation_on_any_page(browser_page, lang: str) -> None:
    page = browser_page
    await page.goto(f"/?lang={lang}")
    await page.screenshot(path=str(ARTIFACTS / f"welcome-{lang}.png"), full_page=True)
    await axe_check(page, f"welcome ({lang})")
    await sign_in_by_keyboard(page, "Sam")
    visited = list(PAGES)
    await page.goto("/consents")
    withdraw = page.locator("a[href$='/withdraw']").first
    if await withdraw.count():
        visited.append(await withdraw.get_attribute("href"))
    await page.goto("/activity")
    question = page.locator("a[href$='/question']").first
    if await question.count():
        visited.append(await question.get_attribute("href"))
    for path in visited:
        separator = "&" if "?" in path else "?"
        await page.goto(f"{path}{separator}lang={lang}")
        assert await page.get_attribute("html", "lang") == lang
        name = re.sub(r"[^a-z0-9]+", "-", path.strip("/")) or "home"
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{lang}.png"), full_page=True)
        await axe_check(page, f"{path} ({lang})")


AUDIT_PAGES = [
    "/audit",
    "/audit/ledger",
    "/audit/ledger/0",
    "/audit/statistics",
    "/audit/anomalies",
    "/audit/hidden",
    "/audit/disputes",
    "/audit/verify",
    "/audit/accesses",
]


@pytest.mark.parametrize("lang", ["en", "fr"])
async def test_axe_finds_no_violation_on_any_audit_page(browser_page, lang: str) -> None:
    page = browser_page
    await page.goto("/?lang=en")  # the provider's page names the demo auditor in English
    await sign_in_by_keyboard(page, "Auditor")
    for path in AUDIT_PAGES:
        await page.goto(f"{path}?lang={lang}")
        assert await page.get_attribute("html", "lang") == lang
        assert await page.locator("nav.audit-nav").count() == 1, path
        name = re.sub(r"[^a-z0-9]+", "-", path.strip("/"))
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{lang}.png"), full_page=True)
        await axe_check(page, f"{path} ({lang})")


async def axe_check(page, where: str) -> None:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', "
        "values: ['wcag2a', 'wcag2aa']}})"
    )
    violations = [
        f"{v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. {v['nodes'][0]['target']})"
        for v in result["violations"]
    ]
    assert violations == [], f"{where}: {violations}"
