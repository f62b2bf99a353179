"""The relying party: sign-in with an OpenID Connect provider.

One code path for every provider, the built-in development one included: discovery
from ``ONCEONLY_OIDC_ISSUER`` (OpenID Connect Discovery 1.0), the authorization code
flow with PKCE S256 (RFC 7636), client authentication with the registered secret
(``client_secret_basic``, or ``client_secret_post`` when that is all the provider
offers), and strict ID token validation: a signature from the provider's JWK Set with
an algorithm from ID_TOKEN_ALGORITHMS, ``iss``, ``aud`` (and ``azp``), ``exp``,
``iat`` and ``nonce``.

Protocol helpers come from Authlib (PKCE challenge, client authentication, URL
parameters), JOSE from joserfc, HTTP from httpx. Authlib's own httpx clients are not
used: Authlib 1.9 deprecates them in favour of the ``httpx2`` package.

The HTTP client can be injected as ``app.state.oidc_http`` (tests pass one built on
``httpx.ASGITransport(app)`` so the built-in provider answers in-process); otherwise
each sign-in opens its own client over the network.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.urls import add_params_to_uri, url_encode
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.applications import Starlette

from app.auth.sessions import web_signing_key
from app.keyfiles import load_or_create
from app.settings import Settings

DISCOVERY_PATH = "/.well-known/openid-configuration"
SCOPE = "openid profile"
CALLBACK_PATH = "/auth/callback"

#: The only signature algorithms an ID token may use. Never "none", never HS256 (an
#: HMAC under the client secret would let anyone holding the secret mint tokens).
ID_TOKEN_ALGORITHMS = ("ES256", "RS256", "PS256")

#: Clock skew tolerated for ``exp`` and ``iat``, in seconds.
LEEWAY_SECONDS = 60

#: How long a provider's discovery document and keys are kept before asking again.
CACHE_SECONDS = 3600

HTTP_TIMEOUT = httpx.Timeout(10.0)
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
CLIENT_SECRET_FILE = "dev-oidc-client.secret"  # noqa: S105 - a file name

log = logging.getLogger("onceonly.auth")


class SignInFailed(Exception):
    """Sign-in could not be completed.

    ``reason`` is one of ``"not-configured"``, ``"provider-unavailable"``,
    ``"refused"`` (the provider answered with an error), ``"expired"`` (no sign-in in
    progress, or its ``state`` does not match), ``"token-exchange"``,
    ``"invalid-id-token"`` or ``"no-subject"``; the message says more, for the log.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class ClientRegistration:
    """What the provider registered for Onceonly, and how to read the person's claims."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    post_logout_redirect_uri: str
    subject_claim: str = "sub"
    auditor_claim: str = "onceonly_role"
    auditor_value: str = "auditor"


def client_secret(settings: Settings) -> str:
    """The portal's client secret: ONCEONLY_OIDC_CLIENT_SECRET, or in demo mode one
    generated into ``var/secrets/dev-oidc-client.secret`` (0600) and shared with the
    built-in provider. Raises KeyFileError when that file is unusable."""
    if settings.oidc_client_secret:
        return settings.oidc_client_secret
    path = settings.secrets_dir / CLIENT_SECRET_FILE
    return load_or_create(path, lambda: secrets.token_urlsafe(32).encode()).decode().strip()


def registration(settings: Settings) -> ClientRegistration | None:
    """The portal's client registration, or None when sign-in is not configured."""
    if not settings.oidc_issuer or not settings.oidc_client_id:
        return None
    return ClientRegistration(
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        client_secret=client_secret(settings),
        redirect_uri=settings.base_url + CALLBACK_PATH,
        post_logout_redirect_uri=settings.base_url + "/",
        subject_claim=settings.oidc_subject_claim,
        auditor_claim=settings.oidc_auditor_claim,
        auditor_value=settings.oidc_auditor_value,
    )


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of a provider's discovery document the relying party uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None = None
    token_endpoint_auth_methods: tuple[str, ...] = ("client_secret_basic",)

    @classmethod
    def from_document(cls, document: Any, issuer: str) -> ProviderMetadata:
        """Read a discovery document for ``issuer``.

        Raises SignInFailed when it is not an object, names another issuer (OpenID
        Connect Discovery section 4.3) or lacks an endpoint.
        """
        if not isinstance(document, dict):
            raise SignInFailed("provider-unavailable", "the discovery document is not an object")
        if document.get("issuer") != issuer:
            raise SignInFailed(
                "provider-unavailable",
                f"the discovery document names issuer {document.get('issuer')!r}, not {issuer!r}",
            )
        endpoints = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise SignInFailed("provider-unavailable", f"the discovery document lacks {name}")
            endpoints[name] = value
        end_session = document.get("end_session_endpoint")
        methods = document.get("token_endpoint_auth_methods_supported")
        return cls(
            issuer=issuer,
            end_session_endpoint=end_session if isinstance(end_session, str) else None,
            token_endpoint_auth_methods=(
                tuple(m for m in methods if isinstance(m, str))
                if isinstance(methods, list)
                else ("client_secret_basic",)
            ),
            **endpoints,
        )


@dataclass(frozen=True)
class SignedIn:
    """Who the provider says signed in. ``subject`` is the raw identifier: pseudonymise
    it at once and never store it."""

    subject: str = field(repr=False)
    name: str | None
    auditor: bool
    id_token: str = field(repr=False)


class RelyingParty:
    """Onceonly as an OpenID Connect client of one provider.

    Keeps the provider's discovery document and JWK Set for CACHE_SECONDS. The PKCE
    code verifier is not stored anywhere: it is derived from the sign-in's ``state``
    with the server's ``pkce_key``, so the sign-in cookie carries nothing secret.
    """

    def __init__(self, client: ClientRegistration, pkce_key: bytes) -> None:
        self.client = client
        self._pkce_key = pkce_key
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: tuple[float, KeySet] | None = None

    def code_verifier(self, state: str) -> str:
        """The PKCE code verifier (43 characters of base64url) of the sign-in ``state``."""
        digest = hmac.new(self._pkce_key, b"pkce:" + state.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def metadata(self, http: httpx.AsyncClient) -> ProviderMetadata:
        """The provider's discovery document (cached). Raises SignInFailed."""
        if self._metadata and self._metadata[0] > time.monotonic():
            return self._metadata[1]
        url = self.client.issuer.rstrip("/") + DISCOVERY_PATH
        metadata = ProviderMetadata.from_document(await _get_json(http, url), self.client.issuer)
        self._metadata = (time.monotonic() + CACHE_SECONDS, metadata)
        return metadata

    async def keys(self, http: httpx.AsyncClient, *, refresh: bool = False) -> KeySet:
        """The provider's JWK Set (cached unless ``refresh``). Raises SignInFailed."""
        if not refresh and self._keys and self._keys[0] > time.monotonic():
            return self._keys[1]
        metadata = await self.metadata(http)
        document = await _get_json(http, metadata.jwks_uri)
        try:
            keys = KeySet.import_key_set(document)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise SignInFailed("provider-unavailable", f"unusable JWK Set: {exc}") from None
        self._keys = (time.monotonic() + CACHE_SECONDS, keys)
        return keys

    async def authorization_url(self, http: httpx.AsyncClient, state: str, nonce: str) -> str:
        """Where to send the person's browser to sign in. Raises SignInFailed."""
        metadata = await self.metadata(http)
        return add_params_to_uri(
            metadata.authorization_endpoint,
            [
                ("response_type", "code"),
                ("client_id", self.client.client_id),
                ("redirect_uri", self.client.redirect_uri),
                ("scope", SCOPE),
                ("state", state),
                ("nonce", nonce),
                ("code_challenge", create_s256_code_challenge(self.code_verifier(state))),
                ("code_challenge_method", "S256"),
            ],
        )

    async def finish(
        self, http: httpx.AsyncClient, *, code: str, state: str, nonce: str
    ) -> SignedIn:
        """Exchange the authorization ``code`` and validate the ID token it brings.

        Raises SignInFailed ("token-exchange", "invalid-id-token", "no-subject" or
        "provider-unavailable").
        """
        metadata = await self.metadata(http)
        tokens = await self._exchange(http, metadata, code, self.code_verifier(state))
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed("token-exchange", "the token response has no id_token")
        keys = await self.keys(http)
        kid = _kid(id_token)
        if kid is not None and kid not in {key.kid for key in keys.keys}:
            keys = await self.keys(http, refresh=True)  # the provider may have rotated
        claims = validate_id_token(
            id_token, keys, issuer=self.client.issuer, client_id=self.client.client_id, nonce=nonce
        )
        subject = claims.get(self.client.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise SignInFailed("no-subject", f"the ID token has no {self.client.subject_claim!r}")
        role = claims.get(self.client.auditor_claim)
        wanted = self.client.auditor_value
        auditor = role == wanted or (isinstance(role, list) and wanted in role)
        name = claims.get("name")
        return SignedIn(subject, name if isinstance(name, str) else None, auditor, id_token)

    async def logout_url(self, http: httpx.AsyncClient, id_token_hint: str | None) -> str | None:
        """The provider's RP-initiated logout address, or None when it has none."""
        metadata = await self.metadata(http)
        if not metadata.end_session_endpoint:
            return None
        params = [
            ("client_id", self.client.client_id),
            ("post_logout_redirect_uri", self.client.post_logout_redirect_uri),
        ]
        if id_token_hint:
            params.insert(0, ("id_token_hint", id_token_hint))
        return add_params_to_uri(metadata.end_session_endpoint, params)

    async def _exchange(
        self, http: httpx.AsyncClient, metadata: ProviderMetadata, code: str, verifier: str
    ) -> Mapping[str, Any]:
        methods = metadata.token_endpoint_auth_methods
        method = "client_secret_post" if "client_secret_basic" not in methods else None
        body = url_encode(
            [
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.client.redirect_uri),
                ("code_verifier", verifier),
            ]
        )
        headers = {"Content-Type": FORM_MEDIA_TYPE, "Accept": "application/json"}
        auth = ClientAuth(self.client.client_id, self.client.client_secret, method)
        url, headers, body = auth.prepare("POST", metadata.token_endpoint, headers, body)
        try:
            response = await http.post(url, content=body, headers=headers)
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInFailed("provider-unavailable", f"token endpoint: {exc}") from None
        if response.status_code != 200 or not isinstance(document, dict):
            error = document.get("error") if isinstance(document, dict) else None
            raise SignInFailed("token-exchange", f"HTTP {response.status_code} {error or ''}")
        if str(document.get("token_type", "")).lower() != "bearer":
            raise SignInFailed("token-exchange", "the token response is not a Bearer token")
        return document


def validate_id_token(
    id_token: str,
    keys: KeySet,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: int | None = None,
) -> dict[str, Any]:
    """The claims of ``id_token`` after OpenID Connect Core section 3.1.3.7 checks.

    The signature must verify with a key of ``keys`` under an algorithm from
    ID_TOKEN_ALGORITHMS; ``iss`` must be ``issuer``; ``aud`` must contain
    ``client_id`` (and ``azp`` must be ``client_id`` when there are several
    audiences); ``exp`` must be in the future and ``iat`` not, each within
    LEEWAY_SECONDS; ``nonce`` must be the one sent. Raises SignInFailed
    ("invalid-id-token") naming the first check that failed.
    """
    try:
        token = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(token.claims)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SignInFailed("invalid-id-token", f"{type(exc).__name__}: {exc}") from None
    claims = token.claims
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise SignInFailed("invalid-id-token", "several audiences and azp is not this client")
    return claims


def relying_party(app: Starlette) -> RelyingParty | None:
    """The application's relying party (made once), or None when sign-in is not
    configured. Raises KeyFileError when a secret file is unusable."""
    cached = getattr(app.state, "relying_party", None)
    if cached is not None:
        return cached
    client = registration(app.state.settings)
    if client is None:
        return None
    pkce_key = hmac.new(web_signing_key(app), b"onceonly.pkce", hashlib.sha256).digest()
    app.state.relying_party = RelyingParty(client, pkce_key)
    return app.state.relying_party


@contextlib.asynccontextmanager
async def http_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client that talks to the provider: ``app.state.oidc_http`` when one was
    injected (tests), else a new one for this sign-in (closed afterwards)."""
    injected: httpx.AsyncClient | None = getattr(app.state, "oidc_http", None)
    if injected is not None:
        yield injected
        return
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
        yield http


async def _get_json(http: httpx.AsyncClient, url: str) -> Any:
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise SignInFailed("provider-unavailable", f"GET {url}: HTTP {response.status_code}")
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SignInFailed("provider-unavailable", f"GET {url}: {exc}") from None


def _kid(id_token: str) -> str | None:
    try:
        kid = jws.extract_compact(id_token.encode()).headers().get("kid")
    except (JoseError, ValueError):
        return None
    return kid if isinstance(kid, str) else None
