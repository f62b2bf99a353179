"""What an API handler calls to let a ministry service in: ``await require(request, scope)``.

It reads the bearer token (RFC 6750 section 2.1), verifies it (app.oauth.tokens),
checks the client is still registered and not disabled, and checks the scope. A
refusal is an app.problems.Problem, rendered as an RFC 9457 document with an RFC 6750
``WWW-Authenticate`` challenge:

=====  ======================  =============================================
 401   ``unauthorized``        no bearer token (challenge without an error)
 401   ``invalid-token``       ``error="invalid_token"``: bad, expired, foreign
                               token, or its client is disabled or gone
 403   ``insufficient-scope``  ``error="insufficient_scope"``, ``scope=...``
 403   ``audit-read-only``     an ``audit`` token asked to write, or holding a
                               write scope too (auditors only read)
=====  ======================  =============================================

The token itself never appears in a problem, a header or a log line.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from starlette.requests import Request

from app.oauth.clients import WRITE_SCOPES, active_client
from app.oauth.server import key_ring
from app.oauth.tokens import AccessToken, InvalidToken, verify_access_token
from app.problems import Problem

REALM = "onceonly"
#: Seconds a client's "active" status is trusted before the database is asked again.
CLIENT_STATUS_TTL = 5.0


class ClientStatusCache:
    """Remembers for ``ttl`` seconds whether a client_id is active, per process.

    A client disabled now is refused by every process within ``ttl`` seconds (and
    gets no new token at once).
    """

    def __init__(
        self, ttl: float = CLIENT_STATUS_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._known: dict[str, tuple[bool, float]] = {}

    async def is_active(self, client_id: str) -> bool:
        """Whether the client exists and is not disabled (cached for ``ttl`` seconds)."""
        now = self.clock()
        cached = self._known.get(client_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        active = await active_client(client_id) is not None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[client_id] = (active, now + self.ttl)
        return active

    def clear(self) -> None:
        """Forget every cached status."""
        self._known.clear()


class VerifiedTokenCache:
    """Tokens already verified, by the SHA-256 of the token, until they expire.

    Verifying an ES256 signature is the largest cost of a small API call; a client sends
    the same token for minutes. Only a token that verified is kept, only until its own
    ``exp``, and the client's status is still checked on every call.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._tokens: dict[bytes, AccessToken] = {}
        self._limit = limit
        self._keys: object = None

    def follow(self, keys: object) -> None:
        """Forget every token verified under another key ring than ``keys`` (a key
        rotation or retirement replaced it), so a removed key's tokens are refused."""
        if keys is not self._keys:
            self._tokens.clear()
            self._keys = keys

    def get(self, raw: str) -> AccessToken | None:
        key = hashlib.sha256(raw.encode()).digest()
        token = self._tokens.get(key)
        if token is not None and token.exp <= time.time():
            del self._tokens[key]
            return None
        return token

    def put(self, raw: str, token: AccessToken) -> None:
        if len(self._tokens) >= self._limit:
            now = time.time()
            self._tokens = {k: t for k, t in self._tokens.items() if t.exp > now}
            if len(self._tokens) >= self._limit:
                self._tokens.clear()
        self._tokens[hashlib.sha256(raw.encode()).digest()] = token


def verified_tokens(request: Request) -> VerifiedTokenCache:
    """The application's cache of verified tokens, created on first use."""
    state = request.app.state
    cache: VerifiedTokenCache | None = getattr(state, "oauth_verified_tokens", None)
    if cache is None:
        cache = VerifiedTokenCache()
        state.oauth_verified_tokens = cache
    return cache


def client_status(request: Request) -> ClientStatusCache:
    """The application's client status cache, created on first use."""
    state = request.app.state
    cache: ClientStatusCache | None = getattr(state, "oauth_client_status", None)
    if cache is None:
        cache = ClientStatusCache()
        state.oauth_client_status = cache
    return cache


async def require(request: Request, scope: str) -> AccessToken:
    """The verified access token of the request, which grants ``scope``.

    Also stored as ``request.state.access_token``. Raises Problem 401
    ``unauthorized`` without a bearer token, 401 ``invalid-token`` when the token
    does not verify or its client is disabled or unknown, 403 ``audit-read-only`` when
    it holds ``audit`` and ``scope`` or another of its scopes writes, and 403
    ``insufficient-scope`` when it lacks ``scope``.
    """
    raw = bearer_token(request)
    ring = key_ring(request)
    verified_tokens(request).follow(ring)
    token = verified_tokens(request).get(raw)
    if token is None:
        try:
            token = verify_access_token(raw, request.app.state.settings, ring.verification)
        except InvalidToken as exc:
            raise _invalid_token(exc.reason) from None
        verified_tokens(request).put(raw, token)
    if not await client_status(request).is_active(token.client_id):
        raise _invalid_token("the client is disabled or no longer registered")
    if "audit" in token.scopes and (scope in WRITE_SCOPES or token.scopes & WRITE_SCOPES):
        # Registration refuses such a client already; a token that still mixes the
        # roles (a client changed in the database) is refused on every call.
        raise Problem(
            403,
            "audit-read-only",
            "Auditors only read",
            "An access token with the audit scope cannot be used to write, nor together "
            "with a scope that writes.",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope"'},
        )
    if scope not in token.scopes:
        raise Problem(
            403,
            "insufficient-scope",
            "Insufficient scope",
            f"The access token does not grant the scope {scope}.",
            headers={
                "WWW-Authenticate": (
                    f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
                )
            },
            scope=scope,
        )
    request.state.access_token = token
    return token


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>``; Problem 401 when there is none."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Problem(
            401,
            "unauthorized",
            "Authentication required",
            "Send an access token from /oauth/token as Authorization: Bearer <token>.",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    return value


def _invalid_token(reason: str) -> Problem:
    # The reasons are fixed phrases from tokens.InvalidToken: no quotes, no token data.
    return Problem(
        401,
        "invalid-token",
        "Invalid access token",
        f"The access token was refused: {reason}.",
        headers={
            "WWW-Authenticate": (
                f'Bearer realm="{REALM}", error="invalid_token", error_description="{reason}"'
            )
        },
    )
