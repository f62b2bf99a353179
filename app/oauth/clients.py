"""API clients: registering ministry systems, authenticating them, what they may ask for.

A client authenticates at the token endpoint in one of two ways, fixed at registration:

- ``client_secret_basic``: a random secret (32 bytes, base64url) shown once to the
  operator and stored only as an scrypt hash;
- ``private_key_jwt`` (RFC 7523): a short-lived JWT assertion signed with a private key
  whose public half is in the client's registered JWK Set.

JWK Sets and client assertions are handled with ``joserfc``, Authlib's JOSE
implementation (``authlib.jose`` is deprecated in its favour): it imports and checks
JWKs of every type we accept (a point off its curve is refused), computes RFC 7638
thumbprints, and refuses to verify with a key whose type does not fit the ``alg``
(an RSA or EC key can never be used as an HS256 secret).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import heapq
import hmac
import ipaddress
import json
import re
import secrets
import time
import warnings
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import JWKRegistry, Key
from tortoise.exceptions import IntegrityError

from app.oauth.models import ApiClient, ClientAuthMethod
from consent.models import Ministry, System

#: Every scope Onceonly knows. A client is registered with some of them and can never
#: obtain a token with a scope it was not registered with.
SCOPES = frozenset(
    {
        "holdings:write",
        "holdings:read",
        "consent:request",
        "consent:read",
        "access:check",
        "ledger:read",
        "notifications:read",
        "audit",
    }
)
#: Scopes whose calls only read. A client with ``audit`` may hold no other scope:
#: auditors read everything and change nothing (acknowledging a notice is a write).
READ_ONLY_SCOPES = frozenset({"holdings:read", "consent:read", "ledger:read", "audit"})
WRITE_SCOPES = SCOPES - READ_ONLY_SCOPES

#: Signature algorithms accepted for client assertions, by key type. "Ed25519" is the
#: RFC 9864 name of what RFC 8037 calls "EdDSA" with an Ed25519 key.
ASSERTION_ALGORITHMS: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "PS256"}),
    "EC": frozenset({"ES256"}),
    "OKP": frozenset({"EdDSA", "Ed25519"}),
}
ALL_ASSERTION_ALGORITHMS = frozenset().union(*ASSERTION_ALGORITHMS.values())
#: An assertion may be valid for at most this long from now (RFC 7523 section 3 asks
#: for a limited lifetime; a short one bounds the replay cache too).
MAX_ASSERTION_LIFETIME = 300
CLOCK_LEEWAY = 30
MAX_ASSERTION_LENGTH = 8192
MAX_JWKS_KEYS = 10
MIN_RSA_BITS = 2048

SECRET_BYTES = 32
# scrypt cost: 16 MiB and tens of milliseconds per check. The secret has 256 random
# bits, so the hash is not what stands between an attacker and the secret; the cost
# makes a stolen table useless for a quick check of many guesses all the same.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32
_SCRYPT_MAXMEM = 64 * 1024 * 1024

_CURVES = {"EC": "P-256", "OKP": "Ed25519"}
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 section 3.3
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ClientError(Exception):
    """A client cannot be registered or changed; the message is one line for a person."""


class UnknownMinistry(ClientError):
    """No ministry has the given code."""


class UnknownSystem(ClientError):
    """No system has the given code, or it belongs to another ministry."""


class UnknownClient(ClientError):
    """No client has the given client_id."""


class InvalidScope(ClientError):
    """A scope is unknown, or not one the client was registered with."""


class InvalidJwks(ClientError):
    """A JWK Set cannot be registered (private key material, bad key, bad shape)."""


class InvalidRegistration(ClientError):
    """A registration field (name, auth method, webhook URL) is not acceptable."""


class DuplicateClient(ClientError):
    """An active client with the same name is already registered for the system."""


class ClientAuthenticationError(Exception):
    """Client authentication failed; ``description`` may be shown to the caller.

    It never says whether a client_id exists: an unknown client, a wrong secret, a
    disabled client and a client using another method all get the same description.
    """

    def __init__(self, description: str = "Client authentication failed.") -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class ClientSecret:
    """HTTP Basic credentials (RFC 6749 section 2.3.1), already form-decoded."""

    client_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class ClientAssertion:
    """An RFC 7523 client assertion, with the ``client_id`` parameter if one was sent."""

    assertion: str = field(repr=False)
    client_id: str | None = None


# --- registration -------------------------------------------------------------------


async def register_client(
    ministry_code: str,
    system_code: str,
    name: str,
    auth_method: ClientAuthMethod | str,
    scopes: Iterable[str],
    jwks: Any = None,
    webhook_url: str | None = None,
) -> tuple[ApiClient, str | None]:
    """Register a client for a ministry's system; return it and its secret (or None).

    The client_id is ``<system>-<8 hex digits>``. A ``client_secret_basic`` client gets
    a new secret, returned here and nowhere else (only its scrypt hash is stored); a
    ``private_key_jwt`` client needs ``jwks``, which is validated (validate_jwks).
    Raises UnknownMinistry, UnknownSystem, InvalidScope, InvalidJwks,
    InvalidRegistration or DuplicateClient.
    """
    method = _auth_method(auth_method)
    name = _name(name)
    granted = validate_scopes(scopes)
    webhook = validate_webhook_url(webhook_url) if webhook_url is not None else None
    if method is ClientAuthMethod.PRIVATE_KEY_JWT:
        if jwks is None:
            raise InvalidJwks("a private_key_jwt client needs a JWK Set of its public keys")
        registered_jwks: dict[str, Any] | None = validate_jwks(jwks)
    else:
        if jwks is not None:
            raise InvalidRegistration("a client_secret_basic client has no JWK Set")
        registered_jwks = None
    ministry = await Ministry.get_or_none(code=ministry_code)
    if ministry is None:
        raise UnknownMinistry(f"no ministry has the code {ministry_code!r}")
    system = await System.get_or_none(code=system_code)
    if system is None or system.ministry_id != ministry.id:  # type: ignore[attr-defined]
        raise UnknownSystem(f"ministry {ministry_code} has no system {system_code!r}")
    if await ApiClient.exists(system=system, name=name, disabled_at=None):
        raise DuplicateClient(f"system {system_code} already has an active client named {name!r}")
    secret = new_secret() if method is ClientAuthMethod.CLIENT_SECRET_BASIC else None
    secret_hash = await asyncio.to_thread(hash_secret, secret) if secret is not None else None
    client = await _create(
        ministry=ministry,
        system=system,
        name=name,
        auth_method=method,
        secret_hash=secret_hash,
        jwks=registered_jwks,
        scopes=granted,
        webhook_url=webhook,
    )
    return client, secret


async def _create(**values: Any) -> ApiClient:
    system: System = values["system"]
    for _ in range(5):
        client_id = f"{system.code}-{secrets.token_hex(4)}"
        try:
            return await ApiClient.create(client_id=client_id, **values)
        except IntegrityError:
            if not await ApiClient.exists(client_id=client_id):
                raise
    raise DuplicateClient("could not find a free client_id; try again")


async def disable_client(client_id: str) -> ApiClient:
    """Disable a client: it gets no new token and its tokens stop working at the guard.

    Disabling twice keeps the first date. Raises UnknownClient.
    """
    client = await ApiClient.get_or_none(client_id=client_id).select_related("ministry", "system")
    if client is None:
        raise UnknownClient(f"no client has the client_id {client_id!r}")
    if client.disabled_at is None:
        client.disabled_at = datetime.now(UTC)
        await client.save(update_fields=["disabled_at"])
    return client


async def list_clients() -> list[ApiClient]:
    """Every client, active or disabled, by client_id, with ministry and system fetched."""
    return await ApiClient.all().select_related("ministry", "system").order_by("client_id")


async def active_client(client_id: str) -> ApiClient | None:
    """The client with this client_id if it exists and is not disabled, else None."""
    return (
        await ApiClient.filter(client_id=client_id, disabled_at=None)
        .select_related("ministry", "system")
        .first()
    )


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, de-duplicated and sorted.

    Raises InvalidScope for an unknown scope, for none, and for ``audit`` together with
    a scope that writes (WRITE_SCOPES).
    """
    wanted = sorted({s.strip() for s in scopes if s.strip()})
    if not wanted:
        raise InvalidScope("a client needs at least one scope; known: " + ", ".join(sorted(SCOPES)))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise InvalidScope(f"unknown scope {unknown[0]!r}; known: " + ", ".join(sorted(SCOPES)))
    writes = [s for s in wanted if s in WRITE_SCOPES]
    if "audit" in wanted and writes:
        held = ", ".join(writes)
        raise InvalidScope(
            f"an audit client only reads: it cannot also hold {held}; "
            "register a separate client for those"
        )
    return wanted


def granted_scopes(client: ApiClient, requested: str | None) -> list[str]:
    """The scopes a token for ``client`` carries, given the ``scope`` request parameter.

    No parameter (or an empty one) means every scope the client is registered with.
    Raises InvalidScope when a requested scope is malformed, unknown or not registered
    for the client.
    """
    registered = set(client.scopes or [])
    if requested is None or not requested.strip():
        return sorted(registered)
    wanted = set(requested.split())
    for scope in sorted(wanted):
        if not _SCOPE_TOKEN.match(scope) or scope not in SCOPES:
            raise InvalidScope("The request names a scope this server does not know.")
        if scope not in registered:
            raise InvalidScope(f"The client is not registered for the scope {scope}.")
    return sorted(wanted)


def validate_webhook_url(url: str) -> str:
    """The URL if it is https (or http to this machine, for development).

    Raises InvalidRegistration otherwise.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    local = host in _LOCAL_HOSTS or _is_loopback(host)
    if len(url) > 500 or not host or parts.username or parts.password:
        raise InvalidRegistration("the webhook URL must be an https URL of at most 500 characters")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise InvalidRegistration("the webhook URL must use https")
    return url


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth_method(value: ClientAuthMethod | str) -> ClientAuthMethod:
    try:
        return ClientAuthMethod(value)
    except ValueError:
        raise InvalidRegistration(
            f"unknown auth method {value!r}; use private_key_jwt or client_secret_basic"
        ) from None


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRegistration("a client needs a name of 1 to 200 characters")
    return name


# --- JWK Sets -----------------------------------------------------------------------


def validate_jwks(jwks: Any) -> dict[str, Any]:
    """A JWK Set of public signing keys, checked and normalised for registration.

    Accepts RSA (at least 2048 bits), EC P-256 and OKP Ed25519 keys; refuses any
    private or symmetric key material, ``use`` other than ``sig``, an ``alg`` the key
    cannot sign with, duplicate ``kid``. A key without ``kid`` gets its RFC 7638
    thumbprint. Only public members, ``kid``, ``alg`` and ``use`` are kept.
    Raises InvalidJwks naming the key (by position) and the fault.
    """
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise InvalidJwks('a JWK Set is a JSON object {"keys": [...]}')
    keys = jwks["keys"]
    if not 1 <= len(keys) <= MAX_JWKS_KEYS:
        raise InvalidJwks(f"a JWK Set must hold 1 to {MAX_JWKS_KEYS} keys, not {len(keys)}")
    normalised = [_public_jwk(n, jwk) for n, jwk in enumerate(keys, start=1)]
    kids = [jwk["kid"] for jwk in normalised]
    if len(set(kids)) != len(kids):
        raise InvalidJwks("two keys of the JWK Set have the same kid")
    return {"keys": normalised}


def _public_jwk(n: int, jwk: Any) -> dict[str, Any]:
    if not isinstance(jwk, dict):
        raise InvalidJwks(f"key {n} is not a JSON object")
    kty = jwk.get("kty")
    if kty == "oct":
        raise InvalidJwks(f"key {n} is a symmetric (oct) key; register public keys only")
    if kty not in _PUBLIC_MEMBERS:
        raise InvalidJwks(f"key {n} has kty {kty!r}; use RSA, EC (P-256) or OKP (Ed25519)")
    private = [m for m in _PRIVATE_MEMBERS if m in jwk]
    if private:
        raise InvalidJwks(
            f"key {n} contains private key material ({private[0]}); register the public key only"
        )
    if kty in _CURVES and jwk.get("crv") != _CURVES[kty]:
        raise InvalidJwks(f"key {n}: a {kty} key must be on curve {_CURVES[kty]}")
    if "use" in jwk and jwk["use"] != "sig":
        raise InvalidJwks(f"key {n} has use {jwk['use']!r}; client keys sign (use: sig)")
    if "alg" in jwk and jwk["alg"] not in ASSERTION_ALGORITHMS[kty]:
        raise InvalidJwks(
            f"key {n}: alg {jwk['alg']!r} does not fit a {kty} key; use "
            + " or ".join(sorted(ASSERTION_ALGORITHMS[kty]))
        )
    if "kid" in jwk and (not isinstance(jwk["kid"], str) or not 0 < len(jwk["kid"]) <= 200):
        raise InvalidJwks(f"key {n} has a kid that is not a string of 1 to 200 characters")
    public = {m: jwk[m] for m in ("kty", *_PUBLIC_MEMBERS[kty]) if m in jwk}
    try:
        with warnings.catch_warnings():
            # joserfc warns about short RSA keys; the check below refuses them instead.
            warnings.simplefilter("ignore", SecurityWarning)
            key = JWKRegistry.import_key(public)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidJwks(f"key {n} is not a valid {kty} public key ({_first_line(exc)})") from None
    if kty == "RSA" and key.raw_value.key_size < MIN_RSA_BITS:  # type: ignore[union-attr]
        raise InvalidJwks(f"key {n} is an RSA key shorter than {MIN_RSA_BITS} bits")
    public["kid"] = jwk.get("kid") or key.thumbprint()
    for member in ("alg", "use"):
        if member in jwk:
            public[member] = jwk[member]
    return public


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- secrets ------------------------------------------------------------------------


def new_secret() -> str:
    """A new client secret: 32 random bytes, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """``scrypt$N$r$p$<salt>$<hash>`` of the secret, with a random 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        ("scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    )


def verify_secret(secret: str, stored: str | None) -> bool:
    """Whether ``secret`` matches the stored hash; compares in constant time.

    A missing or malformed stored hash verifies nothing (and still costs one scrypt,
    so timing does not tell it apart).
    """
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        params = int(n), int(r), int(p)
        expected = _unb64(digest)
        actual = _scrypt(secret, _unb64(salt), *params)
    except (ValueError, binascii.Error):
        _scrypt(secret, b"\0" * 16, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_SCRYPT_MAXMEM,
        dklen=_SCRYPT_LEN,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- replayed assertions ------------------------------------------------------------


class ReplayCache:
    """The ``jti`` of client assertions already used, each kept until it expires.

    In memory, per process: with several worker processes or machines an assertion
    could be replayed once in each. The exposure is bounded by MAX_ASSERTION_LIFETIME
    and needs the assertion itself; a shared store (a table with a unique
    ``(client_id, jti)``) would close it. Only assertions whose signature verified are
    remembered, so an outsider cannot fill it.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._expiry: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Remember ``jti`` until ``expires_at``; False if it is remembered already."""
        self._prune(now)
        key = (client_id, jti)
        if key in self._seen:
            return False
        self._seen[key] = expires_at
        heapq.heappush(self._expiry, (expires_at, key))
        return True

    def _prune(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, key = heapq.heappop(self._expiry)
            self._seen.pop(key, None)


# --- authentication -----------------------------------------------------------------


async def authenticate_client(
    credentials: ClientSecret | ClientAssertion,
    *,
    audiences: Collection[str],
    replay_cache: ReplayCache,
    now: float | None = None,
) -> ApiClient:
    """The active client these credentials authenticate, with ministry and system fetched.

    A ClientSecret must match the hash of a ``client_secret_basic`` client. A
    ClientAssertion must be a JWT signed by a key in a ``private_key_jwt`` client's JWK
    Set with ``iss`` = ``sub`` = the client_id, an ``aud`` in ``audiences``, an
    ``exp`` no more than MAX_ASSERTION_LIFETIME ahead, and a ``jti`` not used before
    (``replay_cache``). Raises ClientAuthenticationError.
    """
    if isinstance(credentials, ClientSecret):
        return await _authenticate_secret(credentials)
    return await _authenticate_assertion(
        credentials, audiences, replay_cache, time.time() if now is None else now
    )


async def _authenticate_secret(credentials: ClientSecret) -> ApiClient:
    client = await active_client(credentials.client_id)
    stored = client.secret_hash if client is not None else None
    # Always one scrypt, so an unknown client_id answers as slowly as a wrong secret.
    matches = await asyncio.to_thread(verify_secret, credentials.secret, stored)
    if client is None or not matches or client.auth_method != ClientAuthMethod.CLIENT_SECRET_BASIC:
        raise ClientAuthenticationError()
    return client


async def _authenticate_assertion(
    credentials: ClientAssertion, audiences: Collection[str], cache: ReplayCache, now: float
) -> ApiClient:
    header, claims = _unverified_parts(credentials.assertion)
    alg = header.get("alg")
    if alg not in ALL_ASSERTION_ALGORITHMS:
        raise ClientAuthenticationError(
            "The client assertion must be signed with one of "
            + ", ".join(sorted(ALL_ASSERTION_ALGORITHMS))
            + "."
        )
    client_id = _check_assertion_claims(claims, credentials.client_id, audiences, now)
    client = await active_client(client_id)
    if client is None or client.auth_method != ClientAuthMethod.PRIVATE_KEY_JWT:
        raise ClientAuthenticationError()
    if not _signature_verifies(credentials.assertion, header, client.jwks):
        raise ClientAuthenticationError()
    if not cache.first_use(client_id, claims["jti"], claims["exp"] + CLOCK_LEEWAY, now):
        raise ClientAuthenticationError("The client assertion was used before (jti replayed).")
    return client


def _unverified_parts(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, before its signature is checked."""
    malformed = ClientAuthenticationError("The client assertion is not a signed JWT.")
    if len(assertion) > MAX_ASSERTION_LENGTH or assertion.count(".") != 2:
        raise malformed
    head, payload, _ = assertion.split(".")
    try:
        header = json.loads(_unb64(head))
        claims = json.loads(_unb64(payload))
    except (ValueError, binascii.Error):
        raise malformed from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise malformed
    return header, claims


def _check_assertion_claims(
    claims: dict[str, Any], client_id: str | None, audiences: Collection[str], now: float
) -> str:
    """The client_id the claims name; raises ClientAuthenticationError if they fail."""

    def fail(reason: str) -> ClientAuthenticationError:
        return ClientAuthenticationError(f"The client assertion {reason}.")

    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not iss or iss != sub:
        raise fail("must have iss and sub both equal to the client_id")
    if client_id is not None and client_id != iss:
        raise fail("is for another client than the client_id parameter")
    aud = claims.get("aud")
    aud_values = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(a, str) and a in audiences for a in aud_values):
        raise fail("must have this server's token endpoint or issuer as aud")
    exp = claims.get("exp")
    if not _is_number(exp):
        raise fail("must have an exp")
    if exp + CLOCK_LEEWAY < now:
        raise fail("has expired")
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_LEEWAY:
        raise fail(f"must expire within {MAX_ASSERTION_LIFETIME} seconds")
    for name in ("iat", "nbf"):
        if name in claims and (not _is_number(claims[name]) or claims[name] > now + CLOCK_LEEWAY):
            raise fail(f"has an {name} in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise fail("must have a jti (a unique string of at most 256 characters)")
    return iss


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _signature_verifies(assertion: str, header: dict[str, Any], jwks: Any) -> bool:
    alg = header["alg"]
    kid = header.get("kid")
    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    for key in _candidate_keys(jwks, alg, kid):
        try:
            with warnings.catch_warnings():
                # joserfc warns that "EdDSA" is superseded by "Ed25519" (RFC 9864);
                # both are accepted here, the warning is for library users.
                warnings.simplefilter("ignore", SecurityWarning)
                jws.deserialize_compact(assertion, key, algorithms=[alg], registry=registry)
        except (JoseError, ValueError, TypeError):
            continue
        return True
    return False


def _candidate_keys(jwks: Any, alg: str, kid: Any) -> list[Key]:
    """The registered keys that may have signed with ``alg`` (and ``kid``, if given)."""
    candidates = []
    for jwk in (jwks or {}).get("keys", []):
        if alg not in ASSERTION_ALGORITHMS.get(jwk.get("kty"), ()):
            continue
        if jwk.get("alg", alg) != alg or (kid is not None and jwk.get("kid") != kid):
            continue
        candidates.append(JWKRegistry.import_key(jwk))
    return candidates
