"""Sessions after sign-in: pages that need a person, idle and absolute timeouts, the
sliding idle deadline, roles, and CSRF tokens on forms."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from app.auth.csrf import CSRF_COOKIE, check_csrf, csrf_token
from app.auth.models import WebSession
from app.auth.sessions import SESSION_COOKIE, now, require_person
from tests.portal_support import application_of, hidden_fields, sign_in


async def whoami(request: Request) -> Response:
    session = await require_person(request)
    return PlainTextResponse(session.pseudonym)


async def audit_only(request: Request) -> Response:
    session = await require_person(request, role="auditor")
    return PlainTextResponse(session.role)


async def form(request: Request) -> Response:
    if request.method == "POST":
        await check_csrf(request, await request.form())
        return PlainTextResponse("accepted")
    return PlainTextResponse(csrf_token(request))


@pytest.fixture
def pages(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client, with three small pages added to its application for these tests."""
    app = application_of(client)
    app.router.routes.extend(
        [
            Route("/test/whoami", whoami),
            Route("/test/audit", audit_only),
            Route("/test/form", form, methods=["GET", "POST"]),
        ]
    )
    return client


async def my_session(client: httpx.AsyncClient) -> WebSession:
    token = client.cookies[SESSION_COOKIE]
    return await WebSession.get(token_hash=hashlib.sha256(token.encode()).hexdigest())


async def test_a_page_without_a_session_sends_to_sign_in(pages: httpx.AsyncClient) -> None:
    response = await pages.get("/test/whoami?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/sign-in?next=%2Ftest%2Fwhoami%3Fx%3D1"


async def test_a_signed_in_person_gets_the_page(pages: httpx.AsyncClient) -> None:
    await sign_in(pages)
    session = await my_session(pages)
    response = await pages.get("/test/whoami")
    assert response.status_code == 200
    assert response.text == session.pseudonym


async def test_the_wrong_role_is_a_403_page(pages: httpx.AsyncClient) -> None:
    await sign_in(pages)
    response = await pages.get("/test/audit")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    await sign_in(pages, "demo-auditor")
    assert (await pages.get("/test/audit")).text == "auditor"


@pytest.mark.parametrize("deadline", ["idle_until", "expires_at"])
async def test_a_timed_out_session_ends_with_a_page_saying_so(
    pages: httpx.AsyncClient, deadline: str
) -> None:
    await sign_in(pages)
    session = await my_session(pages)
    await WebSession.filter(id=session.id).update(**{deadline: now() - timedelta(seconds=1)})

    response = await pages.get("/test/whoami")
    assert response.status_code == 401
    assert "Your session has ended" in response.text
    assert 'href="/auth/sign-in?next=/test/whoami"' in response.text
    cleared = [h for h in response.headers.get_list("set-cookie") if SESSION_COOKIE in h]
    assert cleared and "Max-Age=0" in cleared[0]
    assert (await WebSession.get(id=session.id)).ended_at is not None


async def test_the_session_expired_page_speaks_french(pages: httpx.AsyncClient) -> None:
    await sign_in(pages)
    session = await my_session(pages)
    await WebSession.filter(id=session.id).update(idle_until=now() - timedelta(seconds=1))
    response = await pages.get("/test/whoami", headers={"Accept-Language": "fr-CA"})
    assert response.status_code == 401
    assert '<html lang="fr">' in response.text


async def test_an_expired_session_stays_expired(pages: httpx.AsyncClient) -> None:
    await sign_in(pages)
    session = await my_session(pages)
    await WebSession.filter(id=session.id).update(expires_at=now() - timedelta(seconds=1))
    token = pages.cookies[SESSION_COOKIE]
    assert (await pages.get("/test/whoami")).status_code == 401
    # Even if the browser kept the cookie, the session does not come back.
    pages.cookies.delete(SESSION_COOKIE)
    pages.cookies.set(SESSION_COOKIE, token, domain=pages.base_url.host)
    await WebSession.filter(id=session.id).update(
        idle_until=now() + timedelta(hours=1), expires_at=now() + timedelta(hours=1)
    )
    assert (await pages.get("/test/whoami")).status_code == 303  # sign in again


async def test_activity_slides_the_idle_deadline_at_most_once_a_minute(
    pages: httpx.AsyncClient,
) -> None:
    await sign_in(pages)
    session = await my_session(pages)
    idle = timedelta(minutes=30)

    recent = now() + idle - timedelta(seconds=20)  # touched 20 seconds ago
    await WebSession.filter(id=session.id).update(idle_until=recent)
    assert (await pages.get("/test/whoami")).status_code == 200
    assert (await WebSession.get(id=session.id)).idle_until == recent  # not written

    older = now() + idle - timedelta(minutes=10)  # touched ten minutes ago
    await WebSession.filter(id=session.id).update(idle_until=older)
    before = now()
    assert (await pages.get("/test/whoami")).status_code == 200
    slid = (await WebSession.get(id=session.id)).idle_until
    assert slid >= before + idle - timedelta(seconds=1)


async def test_sign_out_without_a_csrf_token_is_refused(pages: httpx.AsyncClient) -> None:
    await sign_in(pages)
    for data in ({}, {"csrf_token": "wrong"}):
        response = await pages.post("/auth/sign-out", data=data)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "This form has expired. Go back, reload the page and try again." in response.text
    assert (await pages.get("/test/whoami")).status_code == 200  # still signed in


async def test_another_sessions_token_is_refused(pages: httpx.AsyncClient) -> None:
    await sign_in(pages, "demo-resident-sam")
    sams = (await my_session(pages)).csrf_token
    await sign_in(pages, "demo-resident-alex")
    response = await pages.post("/test/form", data={"csrf_token": sams})
    assert response.status_code == 403


async def test_the_session_token_is_in_the_page_and_accepted(pages: httpx.AsyncClient) -> None:
    await sign_in(pages)
    home = await pages.get("/")
    token = hidden_fields(home.text)["csrf_token"]
    assert token == (await my_session(pages)).csrf_token
    assert (await pages.post("/test/form", data={"csrf_token": token})).text == "accepted"


async def test_double_submit_token_without_a_session(pages: httpx.AsyncClient) -> None:
    page = await pages.get("/test/form")
    token = page.text
    (cookie,) = [h for h in page.headers.get_list("set-cookie") if h.startswith(CSRF_COOKIE)]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert (await pages.post("/test/form", data={"csrf_token": token})).text == "accepted"

    # The same token is refused without the cookie it was made for...
    cookie_value = pages.cookies[CSRF_COOKIE]
    pages.cookies.delete(CSRF_COOKIE)
    assert (await pages.post("/test/form", data={"csrf_token": token})).status_code == 403
    # ...or with another browser's cookie.
    pages.cookies.set(CSRF_COOKIE, "someone-else", domain=pages.base_url.host)
    assert (await pages.post("/test/form", data={"csrf_token": token})).status_code == 403
    # A page seen again reuses the cookie rather than making a new one.
    pages.cookies.delete(CSRF_COOKIE)
    pages.cookies.set(CSRF_COOKIE, cookie_value, domain=pages.base_url.host)
    again = await pages.get("/test/form")
    assert not [h for h in again.headers.get_list("set-cookie") if h.startswith(CSRF_COOKIE)]
    assert (await pages.post("/test/form", data={"csrf_token": again.text})).text == "accepted"
