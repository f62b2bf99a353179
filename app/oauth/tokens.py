"""RFC 9068 JWT access tokens: issuing them, and verifying them strictly.

An access token is a JWS signed ES256 with header ``{"alg": "ES256", "typ": "at+jwt",
"kid": ...}`` and the claims ``iss``, ``sub``, ``client_id``, ``aud``, ``exp``,
``iat``, ``nbf``, ``jti``, ``scope``, ``ministry`` and ``system``.

Access tokens go through PyJWT: it is the library a ministry's resource code is most
likely to use to check the same tokens, its ``decode`` takes the one algorithm we
allow, the exact issuer and audience and a list of claims that must be present, and
refuses a key of the wrong type for the algorithm (no HS256-with-the-public-key
confusion). We still check the header ourselves first, so that only ``ES256``,
``typ: at+jwt`` and one of our ``kid`` ever reach the signature check.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from app.oauth.keys import TOKEN_SIGNING_ALG, SigningKey, VerificationKey
from app.oauth.models import ApiClient
from app.settings import Settings
from consent.models import Ministry, System

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type
#: RFC 9068 section 4 lets a resource server also see the full media type.
ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
#: Seconds an access token lives; short, because a disabled client's tokens are only
#: refused by resource servers that ask Onceonly (the guard does).
ACCESS_TOKEN_LIFETIME = 300
#: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds.
CLOCK_LEEWAY = 30
#: A token longer than this is not one of ours; refuse it before parsing.
MAX_TOKEN_LENGTH = 8192

REQUIRED_CLAIMS = (
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "jti",
    "client_id",
    "scope",
    "ministry",
    "system",
)


class InvalidToken(Exception):
    """An access token that must be refused; ``reason`` says why in a few words.

    The reason never contains the token or any value taken from it, so it is safe in
    a ``WWW-Authenticate`` header, a problem document and a log line.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ClientIdentity:
    """Who a token is for: the client and the ministry and system it acts for."""

    client_id: str
    ministry: str
    system: str

    @classmethod
    def of(cls, client: ApiClient) -> ClientIdentity:
        """The identity of an ApiClient whose ``ministry`` and ``system`` are fetched.

        Raises ValueError when they are not (use ``select_related("ministry", "system")``).
        """
        ministry, system = client.ministry, client.system
        if not isinstance(ministry, Ministry) or not isinstance(system, System):
            raise ValueError("fetch the client's ministry and system before issuing a token")
        return cls(client.client_id, ministry.code, system.code)


@dataclass(frozen=True)
class AccessToken:
    """A verified access token: the caller, what it acts for and what it may do."""

    client_id: str
    ministry: str
    system: str
    scopes: frozenset[str]
    jti: str
    exp: int


def issuer(settings: Settings) -> str:
    """The ``iss`` of every token: the server's public base URL."""
    return settings.base_url


def api_audience(settings: Settings) -> str:
    """The ``aud`` of every token: the ministry API's base URL."""
    return settings.base_url + "/api/v1"


def issue_access_token(
    client: ApiClient | ClientIdentity,
    scopes: Iterable[str],
    settings: Settings,
    key: SigningKey,
    now: float | None = None,
    lifetime: int = ACCESS_TOKEN_LIFETIME,
) -> tuple[str, int]:
    """Sign an RFC 9068 access token for ``client``; return it and its lifetime (s).

    ``client`` is an ApiClient with ``ministry`` and ``system`` fetched, or its
    ClientIdentity. ``scopes`` are written sorted, space separated. The caller has
    checked the client may have them (see app.oauth.clients.granted_scopes).
    """
    identity = client if isinstance(client, ClientIdentity) else ClientIdentity.of(client)
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer(settings),
        "sub": identity.client_id,
        "client_id": identity.client_id,
        "aud": api_audience(settings),
        "exp": issued_at + lifetime,
        "iat": issued_at,
        "nbf": issued_at,
        "jti": secrets.token_urlsafe(18),
        "scope": " ".join(sorted(set(scopes))),
        "ministry": identity.ministry,
        "system": identity.system,
    }
    token = jwt.encode(
        claims,
        key.private_key,
        algorithm=TOKEN_SIGNING_ALG,
        headers={"typ": ACCESS_TOKEN_TYPE, "kid": key.kid},
    )
    return token, lifetime


def verify_access_token(
    token: str, settings: Settings, keys: Iterable[VerificationKey]
) -> AccessToken:
    """Verify an access token Onceonly issued and return what it grants.

    Strict: the header must say ``alg: ES256``, ``typ: at+jwt`` and a ``kid`` among
    ``keys``; no ``crit``; every claim in REQUIRED_CLAIMS present; ``iss`` and ``aud``
    exactly ours (``aud`` a single string); ``exp``, ``nbf`` and ``iat`` within
    CLOCK_LEEWAY seconds; ``sub`` equal to ``client_id``. Raises InvalidToken.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("the token is malformed")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise InvalidToken("the token is malformed") from None
    key = _header_key(header, keys)
    try:
        claims = jwt.decode(
            token,
            key.public_key,
            algorithms=[TOKEN_SIGNING_ALG],
            audience=api_audience(settings),
            issuer=issuer(settings),
            leeway=CLOCK_LEEWAY,
            options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
        )
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(_reason(exc)) from None
    return _access_token(claims)


def _header_key(header: dict[str, Any], keys: Iterable[VerificationKey]) -> VerificationKey:
    if header.get("alg") != TOKEN_SIGNING_ALG:
        raise InvalidToken("the token is not signed ES256")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
        raise InvalidToken("the token type is not at+jwt")
    if "crit" in header:
        raise InvalidToken("the token has critical header parameters")
    kid = header.get("kid")
    for key in keys:
        if isinstance(kid, str) and key.kid == kid:
            return key
    raise InvalidToken("the token is signed by an unknown key")


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token has the wrong issuer"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token has the wrong audience"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token has no {exc.claim} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token signature does not verify"
    return "the token is malformed"


def _access_token(claims: dict[str, Any]) -> AccessToken:
    text = ("sub", "client_id", "jti", "scope", "ministry", "system")
    if not all(isinstance(claims[name], str) for name in text):
        raise InvalidToken("the token is malformed")
    if claims["sub"] != claims["client_id"]:
        raise InvalidToken("the token subject is not its client")
    return AccessToken(
        client_id=claims["client_id"],
        ministry=claims["ministry"],
        system=claims["system"],
        scopes=frozenset(claims["scope"].split()),
        jti=claims["jti"],
        exp=int(claims["exp"]),
    )
