"""Rate limits: how often one client or one address may call an endpoint.

A small GCRA (generic cell rate algorithm, the token bucket written as one number per
key) limiter, in memory, per process. Each group of endpoints has a rate of ``count``
requests per ``period`` seconds, with a burst of ``count``: a key may spend its whole
minute at once, then one request every ``period / count`` seconds. A refused request
costs nothing. Keys that are back to a full budget are forgotten, and past
``max_keys`` the least recently seen ones are too, so memory stays bounded.

With several worker processes each keeps its own counts: the limits are per process.

The HTTP edge calls ``enforce(request, group, key)``, which raises a 429 Problem with
``Retry-After``; ``client_address(request)`` is the key of per-address limits.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from starlette.requests import Request

from app.problems import Problem
from app.settings import Limits

#: The groups of endpoints, each with its own rate (see ``rates``).
SIGN_IN = "sign-in"
SIGN_IN_CALLBACK = "sign-in-callback"
DEV_AUTHORIZE = "dev-authorize"
TOKEN_IP = "token-ip"  # noqa: S105 - a group name
TOKEN_CLIENT = "token-client"  # noqa: S105
TOKEN_FAILURES = "token-failures"  # noqa: S105
ACCESS_CHECKS = "access-checks"

MAX_KEYS = 100_000
#: Longer keys (a strange X-Forwarded-For entry) are cut, so a key's size is bounded.
MAX_KEY_CHARS = 100

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period`` seconds (and a burst of ``count``); 0 is no limit."""

    count: int
    period: float = 60.0


class RateLimited(Exception):
    """A request over its rate; ``retry_after`` is how many seconds until one would pass."""

    def __init__(self, group: str, retry_after: float) -> None:
        super().__init__(f"rate limit of {group} exceeded; retry after {retry_after:.1f} s")
        self.group = group
        self.retry_after = retry_after


class RateLimiter:
    """GCRA rate limits by ``(group, key)``, in memory.

    ``rates`` maps each group to its Rate; a group without one, or with a count of 0,
    is not limited. ``clock`` gives monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        rates: Mapping[str, Rate],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.rates = dict(rates)
        self.clock = clock
        self.max_keys = max_keys
        # (group, key) -> theoretical arrival time: when the key's budget is full again.
        self._tat: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tat)

    def hit(self, group: str, key: str, cost: int = 1) -> None:
        """Spend ``cost`` requests of ``key``'s budget in ``group``.

        A cost above the whole burst is charged as the whole burst (it passes only with a
        full budget). Raises RateLimited, spending nothing, when the budget is short.
        """
        self._check(group, key, cost, charge=True)

    def peek(self, group: str, key: str, cost: int = 1) -> None:
        """Raise RateLimited when ``hit(group, key, cost)`` would; spend nothing."""
        self._check(group, key, cost, charge=False)

    def _check(self, group: str, key: str, cost: int, *, charge: bool) -> None:
        rate = self.rates.get(group)
        if rate is None or rate.count <= 0 or cost <= 0:
            return
        interval = rate.period / rate.count
        ident = (group, key[:MAX_KEY_CHARS])
        now = self.clock()
        tat = max(self._tat.get(ident, now), now)
        new_tat = tat + min(cost, rate.count) * interval
        allowed_at = new_tat - rate.period
        if allowed_at > now:
            raise RateLimited(group, allowed_at - now)
        if charge:
            self._tat[ident] = new_tat
            self._tat.move_to_end(ident)
            if len(self._tat) > self.max_keys:
                self._evict(now)

    def _evict(self, now: float) -> None:
        """Forget keys whose budget is full again; then, if still too many, the least
        recently charged ones (their debt is forgiven: memory matters more)."""
        for ident in [ident for ident, tat in self._tat.items() if tat <= now]:
            del self._tat[ident]
        while len(self._tat) > self.max_keys * 9 // 10:
            self._tat.popitem(last=False)


def rates(limits: Limits) -> dict[str, Rate]:
    """The rate of each group from the settings (requests per minute)."""
    per_minute = {
        SIGN_IN: limits.sign_in_per_ip,
        SIGN_IN_CALLBACK: limits.sign_in_per_ip,
        DEV_AUTHORIZE: limits.sign_in_per_ip,
        TOKEN_IP: limits.token_per_ip,
        TOKEN_CLIENT: limits.token_per_client,
        TOKEN_FAILURES: limits.token_failures_per_ip,
        ACCESS_CHECKS: limits.access_checks_per_client,
    }
    return {group: Rate(count) for group, count in per_minute.items()}


def limiter(request: Request) -> RateLimiter:
    """The application's limiter, created from its settings on first use."""
    state = request.app.state
    found: RateLimiter | None = getattr(state, "rate_limiter", None)
    if found is None:
        found = RateLimiter(rates(state.settings.limits))
        state.rate_limiter = found
    return found


def enforce(request: Request, group: str, key: str, cost: int = 1) -> None:
    """Spend ``cost`` of ``key``'s budget in ``group``, or raise a 429 Problem.

    The problem (``type`` .../rate-limited; an error page on HTML paths) carries
    ``Retry-After`` in whole seconds.
    """
    try:
        limiter(request).hit(group, key, cost)
    except RateLimited as exc:
        raise too_many_requests(exc) from None


def too_many_requests(exc: RateLimited) -> Problem:
    """The 429 problem for a refused request."""
    seconds = max(1, math.ceil(exc.retry_after))
    return Problem(
        429,
        "rate-limited",
        "Too many requests",
        f"Too many requests; try again in {seconds} seconds.",
        headers={"Retry-After": str(seconds)},
    )


def client_address(request: Request) -> str:
    """The address of the client: the socket peer, or, when the peer is a trusted proxy
    (ONCEONLY_TRUSTED_PROXIES), the address X-Forwarded-For gives for the client."""
    peer = request.client.host if request.client else ""
    trusted: Sequence[Network] = request.app.state.settings.limits.trusted_proxies
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    return forwarded_client(peer, forwarded, trusted)


def forwarded_client(peer: str, forwarded: str, trusted: Sequence[Network]) -> str:
    """The client behind ``peer`` (a trusted proxy) from an X-Forwarded-For value.

    Each proxy appends the address it saw, so the list is read from the right: the first
    address that is not a trusted proxy is the client (anything left of it could be
    written by the client itself). When every address is trusted, the leftmost one.
    """
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop[:MAX_KEY_CHARS]
    return hops[0][:MAX_KEY_CHARS] if hops else peer


def _is_trusted(host: str, trusted: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in trusted)
