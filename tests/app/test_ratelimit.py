"""Rate limits: the limiter with a fake clock, and the limited endpoints through HTTP.

The HTTP tests run the application with small limits (see ``settings`` below) and give
each simulated client its own socket address through ``httpx.ASGITransport(client=...)``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.problems import PROBLEM_BASE
from app.ratelimit import Rate, RateLimited, RateLimiter, forwarded_client, rates
from app.seed import seed_reference
from app.services import Services
from app.settings import Limits, Settings, SettingsError
from tests.conftest import Database
from tests.oauth_support import basic, bearer, get_token, register, request_token
from tests.portal_support import use_in_process_provider
from tests.support import make_settings

ACCESS_CHECK = {
    "person_id": "resident-7",
    "recipient": "MTO",
    "categories": ["address"],
    "purpose": "licence-renewal",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the limiter ------------------------------------------------------------------------


def test_a_burst_passes_then_429_until_one_interval_has_passed() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"g": Rate(3, 60)}, clock=clock)
    for _ in range(3):
        limiter.hit("g", "a")
    with pytest.raises(RateLimited) as refused:
        limiter.hit("g", "a")
    assert refused.value.retry_after == pytest.approx(20)
    clock.now += 19.9
    with pytest.raises(RateLimited):
        limiter.hit("g", "a")
    clock.now += 0.1
    limiter.hit("g", "a")  # one more, one interval (60 s / 3) later
    with pytest.raises(RateLimited):
        limiter.hit("g", "a")


def test_a_refused_request_costs_nothing_and_the_budget_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"g": Rate(2, 60)}, clock=clock)
    limiter.hit("g", "a")
    limiter.hit("g", "a")
    for _ in range(50):
        with pytest.raises(RateLimited):
            limiter.hit("g", "a")
    clock.now += 60
    limiter.hit("g", "a")
    limiter.hit("g", "a")


def test_keys_and_groups_are_counted_apart() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"g": Rate(1, 60), "h": Rate(1, 60)}, clock=clock)
    limiter.hit("g", "a")
    with pytest.raises(RateLimited):
        limiter.hit("g", "a")
    limiter.hit("g", "b")
    limiter.hit("h", "a")


def test_a_rate_of_zero_or_no_rate_is_no_limit() -> None:
    limiter = RateLimiter({"off": Rate(0)}, clock=FakeClock())
    for _ in range(1000):
        limiter.hit("off", "a")
        limiter.hit("unknown", "a")
    assert len(limiter) == 0


def test_cost_peek_and_a_cost_above_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"g": Rate(10, 60)}, clock=clock)
    limiter.hit("g", "a", cost=7)
    limiter.peek("g", "a", cost=3)
    limiter.peek("g", "a", cost=3)  # a peek spends nothing
    with pytest.raises(RateLimited):
        limiter.peek("g", "a", cost=4)
    with pytest.raises(RateLimited):
        limiter.hit("g", "a", cost=4)
    limiter.hit("g", "a", cost=3)
    # A cost above the whole burst passes with a full budget, and empties it.
    clock.now += 60
    limiter.hit("g", "b", cost=500)
    with pytest.raises(RateLimited):
        limiter.hit("g", "b")


def test_memory_stays_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"g": Rate(5, 60)}, clock=clock, max_keys=100)
    for n in range(1000):
        limiter.hit("g", f"key-{n}")
        assert len(limiter) <= 100
    # Keys whose budget is full again are forgotten before any other.
    clock.now += 60
    limiter.hit("g", "busy", cost=5)
    for n in range(50):
        limiter.hit("g", f"new-{n}")
    assert len(limiter) <= 51
    with pytest.raises(RateLimited):
        limiter.hit("g", "busy")
    limiter.hit("g", "x" * 10_000)  # a long key is cut, not stored whole


def test_rates_come_from_the_settings_per_minute() -> None:
    limits = Settings.from_env({"ONCEONLY_RATE_LIMIT_ACCESS_CHECKS": "0"}).limits
    table = rates(limits)
    assert table["sign-in"] == Rate(30, 60.0)
    assert table["token-client"] == Rate(60, 60.0)
    assert table["token-ip"] == Rate(60, 60.0)
    assert table["token-failures"] == Rate(30, 60.0)
    assert table["access-checks"] == Rate(0, 60.0)
    assert Limits().access_checks_per_client == 100_000


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("198.51.100.7", "198.51.100.7"),
        # The client may write anything left of what the trusted proxies appended.
        ("1.1.1.1, 198.51.100.7", "198.51.100.7"),
        ("1.1.1.1, 198.51.100.7, 10.0.0.2", "198.51.100.7"),
        ("garbage, 10.0.0.2", "garbage"),
        ("10.0.0.3, 10.0.0.2", "10.0.0.3"),  # every hop trusted: the leftmost
        ("", "10.0.0.1"),
        (" , ", "10.0.0.1"),
    ],
)
def test_forwarded_client_reads_from_the_right(forwarded: str, client: str) -> None:
    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    assert forwarded_client("10.0.0.1", forwarded, trusted) == client


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RATE_LIMIT_SIGN_IN", "many", "ONCEONLY_RATE_LIMIT_SIGN_IN must be a number from 0"),
        ("RATE_LIMIT_TOKEN", "-1", "(0 turns it off)"),
        ("RATE_LIMIT_ACCESS_CHECKS", "9" * 40, "ONCEONLY_RATE_LIMIT_ACCESS_CHECKS"),
        ("TRUSTED_PROXIES", "10.0.0.1/8", "ONCEONLY_TRUSTED_PROXIES must be comma-separated"),
        ("TRUSTED_PROXIES", "proxy.example", "ONCEONLY_TRUSTED_PROXIES"),
    ],
)
def test_bad_limits_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({f"ONCEONLY_{name}": value})


def test_trusted_proxies_setting() -> None:
    default = Settings.from_env({}).limits.trusted_proxies
    assert [str(n) for n in default] == ["127.0.0.1/32", "::1/128"]
    assert Settings.from_env({"ONCEONLY_TRUSTED_PROXIES": ""}).limits.trusted_proxies == ()
    chosen = Settings.from_env({"ONCEONLY_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32"})
    assert [str(n) for n in chosen.limits.trusted_proxies] == ["10.0.0.0/8", "2001:db8::/32"]


# --- through HTTP -----------------------------------------------------------------------


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    """Small limits, and 10.0.0.0/8 as the trusted reverse proxies."""
    return make_settings(
        database.url,
        var_dir=tmp_path / "var",
        ONCEONLY_RATE_LIMIT_SIGN_IN="3",
        ONCEONLY_RATE_LIMIT_TOKEN="2",
        ONCEONLY_RATE_LIMIT_TOKEN_IP="6",
        ONCEONLY_RATE_LIMIT_TOKEN_FAILURES="2",
        ONCEONLY_RATE_LIMIT_ACCESS_CHECKS="3",
        ONCEONLY_TRUSTED_PROXIES="10.0.0.0/8",
    )


Connect = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def connect(services: Services) -> AsyncIterator[Connect]:
    """``connect(address)``: an HTTP client whose requests come from ``address``, all
    to one application (so one set of rate-limit counts)."""
    app = create_app(services.settings, manage_services=False)
    app.state.services = services
    opened: list[httpx.AsyncClient] = []

    def make(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        client = httpx.AsyncClient(transport=transport, base_url=services.settings.base_url)
        use_in_process_provider(client, app)
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()
    if getattr(app.state, "oidc_http", None) is not None:
        await app.state.oidc_http.aclose()


def assert_rate_limited_problem(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == PROBLEM_BASE + "rate-limited"
    assert int(response.headers["retry-after"]) >= 1


async def test_sign_in_is_limited_per_address_with_a_page_in_the_persons_language(
    connect: Connect,
) -> None:
    person = connect("192.0.2.10")
    for _ in range(3):
        assert (await person.get("/auth/sign-in")).status_code == 303
    refused = await person.get("/auth/sign-in", headers={"Accept-Language": "fr-CA,fr;q=0.9"})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "20"  # one sign-in per 60 s / 3
    assert refused.headers["content-type"].startswith("text/html")
    assert "Trop de tentatives" in refused.text
    english = await person.get("/auth/sign-in")
    assert english.status_code == 429 and "Too many attempts" in english.text
    # Someone else, at another address, still signs in.
    assert (await connect("192.0.2.11").get("/auth/sign-in")).status_code == 303


async def test_the_callback_and_the_demo_provider_are_limited_per_address(
    connect: Connect,
) -> None:
    person = connect("192.0.2.20")
    for _ in range(3):
        assert (await person.get("/auth/callback")).status_code == 400  # no sign-in started
    assert (await person.get("/auth/callback")).status_code == 429
    for _ in range(3):
        assert (await person.post("/dev-oidc/authorize", data={})).status_code == 403
    refused = await person.post("/dev-oidc/authorize", data={})
    assert refused.status_code == 429 and "Retry-After" in refused.headers


async def test_the_forwarded_address_counts_only_from_a_trusted_proxy(
    connect: Connect,
) -> None:
    proxy = connect("10.0.0.5")
    # Behind the trusted proxy, each person has their own budget...
    for n in range(3):
        for person in ("198.51.100.7", "198.51.100.8"):
            headers = {"X-Forwarded-For": f"203.0.113.{n}, {person}"}
            assert (await proxy.get("/auth/sign-in", headers=headers)).status_code == 303
    refused = await proxy.get("/auth/sign-in", headers={"X-Forwarded-For": "198.51.100.7"})
    assert refused.status_code == 429
    # ...while an untrusted peer cannot spread its requests over invented addresses.
    direct = connect("203.0.113.50")
    answers = []
    for n in range(5):
        headers = {"X-Forwarded-For": f"198.51.100.{100 + n}"}
        answers.append((await direct.get("/auth/sign-in", headers=headers)).status_code)
    assert answers == [303, 303, 303, 429, 429]


async def test_tokens_are_limited_per_client(connect: Connect, services: Services) -> None:
    http = connect("192.0.2.30")
    first, second = await register(), await register()
    for _ in range(2):
        await get_token(http, first)
    assert_rate_limited_problem(await request_token(http, first))
    # Another client is not held back by the first one's limit.
    await get_token(http, second)


async def test_tokens_are_limited_per_address(connect: Connect, services: Services) -> None:
    clients = [await register() for _ in range(4)]
    http = connect("192.0.2.40")
    for client in clients[:3]:
        await get_token(http, client)
        await get_token(http, client)
    assert_rate_limited_problem(await request_token(http, clients[3]))
    await get_token(connect("192.0.2.41"), clients[3])


async def test_failed_client_authentication_is_limited_per_address(
    connect: Connect, services: Services
) -> None:
    client = await register()
    assert client.secret
    attacker = connect("192.0.2.50")
    form = {"grant_type": "client_credentials"}
    for guess in ("guess-1", "guess-2"):
        wrong = await attacker.post(
            "/oauth/token", data=form, headers=basic(client.client_id, guess)
        )
        assert wrong.status_code == 401
    # Past two failures the address is refused, even with the right secret...
    assert_rate_limited_problem(await request_token(attacker, client))
    # ...while the client itself, from its own address, is not locked out.
    await get_token(connect("192.0.2.51"), client)


async def test_access_checks_are_limited_per_client(connect: Connect, services: Services) -> None:
    await seed_reference()
    http = connect("192.0.2.60")
    first = bearer(await get_token(http, await register(scopes=("access:check",))))
    second = bearer(await get_token(http, await register(scopes=("access:check",))))
    for n in range(3):
        body = {**ACCESS_CHECK, "query_id": f"q-{n}"}
        answer = await http.post("/api/v1/access-checks", json=body, headers=first)
        assert answer.status_code == 200, answer.text
    refused = await http.post(
        "/api/v1/access-checks", json={**ACCESS_CHECK, "query_id": "q-9"}, headers=first
    )
    assert_rate_limited_problem(refused)
    assert refused.headers["retry-after"] == "20"
    # The other client still has its budget; a batch spends one check per person.
    persons = [{"person_id": f"resident-{n}", "query_id": f"b-{n}"} for n in range(2)]
    batch = {k: v for k, v in ACCESS_CHECK.items() if k != "person_id"}
    answer = await http.post(
        "/api/v1/access-checks/batch", json={**batch, "persons": persons}, headers=second
    )
    assert answer.status_code == 200, answer.text
    again = await http.post(
        "/api/v1/access-checks/batch",
        json={**batch, "persons": [{"person_id": "resident-8", "query_id": "b-8"}, *persons]},
        headers=second,
    )
    assert_rate_limited_problem(again)
    ledger_size = await services.ledger.size()
    single = await http.post(
        "/api/v1/access-checks", json={**ACCESS_CHECK, "query_id": "q-last"}, headers=second
    )
    assert single.status_code == 200
    assert await services.ledger.size() == ledger_size + 1
