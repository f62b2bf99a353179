"""Fuzzing the HTTP edge's own parsers: cursors and limits, and the ledger read API.

The cursor decoder (app.api.edge.page_params) gets arbitrary text, base64 of arbitrary
bytes and of hostile JSON (deep nesting, huge numbers), and mutated cursors it gave out:
it answers a value its check accepts or a 400 problem, nothing else. Then hostile
cursors, limits, tile paths, entry indices and proof sizes go through HTTP to the
running application, which never answers a server error.

The HTTP part drives the app in an event loop of its own, so that Hypothesis can run
each example to completion (and shrink a failure) from a plain test function.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from app.api.edge import MAX_PAGE, next_cursor, page_params
from app.api.routes import _is_consent_position
from app.main import create_app
from app.problems import Problem
from app.seed import seed_reference
from app.services import open_services
from app.settings import Settings
from tests.oauth_support import bearer, get_token, register

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
T = TypeVar("T")


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
HOSTILE_JSON = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    JSON_VALUES.map(lambda v: json.dumps({"after": v}).encode()),
    st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 20_000).map(lambda n: b'{"after":' + b"[" * n + b"]" * n + b"}"),
    st.text("0123456789", min_size=1, max_size=6000).map(
        lambda d: b'{"after":' + d.encode() + b"}"
    ),
)
VALID_AFTER = st.integers(0, 2**63 - 1) | st.tuples(
    st.datetimes(timezones=st.timezones()), st.uuids()
).map(lambda t: [t[0].isoformat(), str(t[1])])


@st.composite
def mutated_cursor(draw: st.DrawFn) -> str:
    cursor = next_cursor(draw(VALID_AFTER))
    assert cursor is not None
    at = draw(st.integers(0, len(cursor)))
    insert = draw(st.text(max_size=3))
    return cursor[:at] + insert + cursor[at + draw(st.integers(0, 3)) :]


CURSORS = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(encode),
    HOSTILE_JSON.map(encode),
    mutated_cursor(),
)
LIMITS = st.one_of(st.none(), st.text(max_size=30), st.integers(-10, 10**30).map(str))


def page_request(cursor: str | None, limit: str | None) -> Request:
    params = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return Request({"type": "http", "query_string": query.encode(), "headers": []})


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


@FUZZ
@given(CURSORS, LIMITS, st.sampled_from([None, _is_consent_position]))
@example(encode(b"[" * 20_000), None, None)
@example(encode(b'{"after":' + b"[" * 5000 + b"]" * 5000 + b"}"), None, _is_consent_position)
@example(encode(b'{"after":' + b"1" * 5000 + b"}"), None, None)
@example(None, "\u0665", None)
def test_the_cursor_decoder_answers_a_value_or_a_400(cursor: Any, limit: Any, check: Any) -> None:
    try:
        after, size = page_params(page_request(cursor, limit), check)
    except Problem as problem:
        assert problem.status == 400
        assert problem.kind in {"invalid-cursor", "validation"}
        return
    assert 1 <= size <= MAX_PAGE
    assert after is None or (check or _is_id)(after)


@FUZZ
@given(VALID_AFTER)
def test_a_cursor_decodes_to_what_it_was_made_from(after: Any) -> None:
    check = _is_id if isinstance(after, int) else _is_consent_position
    decoded, _ = page_params(page_request(next_cursor(after), None), check)
    assert decoded == after


# --- through HTTP -------------------------------------------------------------------------


class InProcess:
    """The application on its own event loop, with a token granting every scope and a
    few ledger entries (so that some proofs and tiles exist)."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.services = self.run(open_services(settings))
        app = create_app(settings, manage_services=False)
        app.state.services = self.services
        transport = httpx.ASGITransport(app=app)
        self.http = httpx.AsyncClient(transport=transport, base_url=settings.base_url)
        self.headers = self.run(self._prepare())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    async def _prepare(self) -> dict[str, str]:
        await seed_reference()
        scopes = ("access:check", "holdings:read", "consent:read", "notifications:read")
        headers = bearer(await get_token(self.http, await register(scopes=scopes)))
        for n in range(3):
            body = {
                "person_id": f"resident-{n}",
                "recipient": "MTO",
                "categories": ["address"],
                "purpose": "licence-renewal",
                "query_id": f"fuzz-{n}",
            }
            answer = await self.http.post("/api/v1/access-checks", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
        return headers

    def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        return self.run(self.http.get(path, params=params, headers=self.headers))

    def close(self) -> None:
        self.run(self.http.aclose())
        self.run(self.services.close())
        self.loop.close()


@pytest.fixture
def edge(settings: Settings) -> Iterator[InProcess]:
    served = InProcess(settings)
    try:
        yield served
    finally:
        served.close()


def assert_no_server_error(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.request.url, answer.text)
    if answer.status_code >= 400 and answer.request.url.path.startswith(("/api/", "/ledger/")):
        assert answer.headers["content-type"] == "application/problem+json", answer.text


NUMBERS = st.one_of(
    st.text(max_size=30),
    st.integers(-5, 2**70).map(str),
    st.text("0123456789\u0665\u00b2\u2070", min_size=1, max_size=25),
)
TILE_PATHS = st.one_of(
    st.text(max_size=120),
    st.from_regex(r"(entries|[0-9]{1,3})/(x[0-9]{3}/){0,7}[0-9]{3}(\.p/[0-9]{1,4})?"),
    st.integers(0, 3000).map(lambda n: "0/" + "x001/" * n + "001"),
)


@FUZZ
@given(
    st.sampled_from(["/api/v1/holdings", "/api/v1/consents", "/api/v1/notifications"]),
    CURSORS,
    LIMITS,
)
@example("/api/v1/consents", encode(b"[" * 20_000), None)
def test_hostile_cursors_and_limits_never_cause_a_server_error(
    edge: InProcess, path: str, cursor: str, limit: str | None
) -> None:
    params = {"cursor": cursor} if limit is None else {"cursor": cursor, "limit": limit}
    assert_no_server_error(edge.get(path, params))


@FUZZ
@given(
    st.one_of(
        TILE_PATHS.map(lambda p: ("/ledger/tile/" + quote(p, safe="/"), None)),
        NUMBERS.map(lambda n: ("/ledger/receipt/" + quote(n, safe=""), None)),
        st.tuples(NUMBERS, NUMBERS).map(
            lambda t: ("/ledger/proof/inclusion", {"index": t[0], "size": t[1]})
        ),
        st.tuples(NUMBERS, NUMBERS).map(
            lambda t: ("/ledger/proof/consistency", {"old": t[0], "new": t[1]})
        ),
    )
)
@example(("/ledger/tile/0/" + "x001/" * 2000 + "001", None))
@example(("/ledger/tile/entries/x195/x716/x167/x451/x167/x132/x451/019", None))  # > 2**63
@example(("/ledger/tile/0/x195/x716/x167/x451/x167/x132/x451/019", None))
@example(("/ledger/receipt/%C2%B2", None))  # "²" is a digit to str.isdigit, not to int()
@example(("/ledger/proof/consistency", {"old": "0", "new": "\u00b2"}))
def test_the_ledger_read_api_never_causes_a_server_error(
    edge: InProcess, request: tuple[str, dict[str, str] | None]
) -> None:
    path, params = request
    assert_no_server_error(edge.get(path, params))
