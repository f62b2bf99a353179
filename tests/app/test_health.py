import httpx
from tortoise.connection import get_connection


async def test_healthz_answers(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_when_migrated(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok", "migrations": "applied"}


async def test_readyz_names_pending_migrations(client: httpx.AsyncClient) -> None:
    await get_connection("default").execute_query("DELETE FROM tortoise_migrations")
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    from app.schema import migration_names

    assert r.json()["pending_migrations"] == migration_names()


async def test_readyz_when_database_is_gone(client: httpx.AsyncClient) -> None:
    await get_connection("default").close()
    # A closed connection reconnects on use; make it unusable instead.
    conn = get_connection("default")
    original = conn.execute_query

    async def broken(*args, **kwargs):
        raise ConnectionRefusedError("connection refused")

    conn.execute_query = broken
    try:
        r = await client.get("/readyz")
    finally:
        conn.execute_query = original
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "database": "unreachable"}


async def test_unknown_api_path_is_a_problem_document(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith("/not-found")
    assert body["status"] == 404
    assert body["instance"] == "/api/v1/nothing-here"


async def test_unknown_page_is_a_readable_page(client: httpx.AsyncClient) -> None:
    r = await client.get("/no-such-page")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "does not exist" in r.text
    assert '<html lang="en">' in r.text


async def test_home_page_invites_to_sign_in(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert 'href="/auth/sign-in"' in r.text
    assert "Your data, used once, with your say" in r.text
