"""The authorization server's HTTP edge: token endpoint, JWK Set, server metadata.

- ``POST /oauth/token``: the client credentials grant (RFC 6749 section 4.4) with
  ``client_secret_basic`` or ``private_key_jwt`` (RFC 7523) client authentication;
  answers an RFC 9068 access token, or an RFC 6749 section 5.2 error document.
- ``GET /oauth/jwks``: the JWK Set (RFC 7517) of the keys that sign access tokens.
- ``GET /.well-known/oauth-authorization-server``: RFC 8414 server metadata.

Every answer of the token endpoint carries ``Cache-Control: no-store``. Its errors
never say whether a client_id exists. It is rate-limited (app.ratelimit) per client
address, per client once authenticated, and failed client authentications have a
stricter limit of their own per address: past any of them, a 429 problem.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.keyfiles import Reloaded
from app.oauth.clients import (
    ALL_ASSERTION_ALGORITHMS,
    SCOPES,
    ClientAssertion,
    ClientAuthenticationError,
    ClientSecret,
    InvalidScope,
    ReplayCache,
    authenticate_client,
    granted_scopes,
)
from app.oauth.keys import KeyRing, token_keys
from app.oauth.tokens import issue_access_token
from app.ratelimit import (
    TOKEN_CLIENT,
    TOKEN_FAILURES,
    TOKEN_IP,
    RateLimited,
    client_address,
    enforce,
    limiter,
    too_many_requests,
)
from app.settings import Settings

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path
JWKS_PATH = "/oauth/jwks"
METADATA_PATH = "/.well-known/oauth-authorization-server"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_TYPE = "client_credentials"
AUTH_METHODS = ["private_key_jwt", "client_secret_basic"]
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 32

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BASIC_CHALLENGE = 'Basic realm="onceonly", charset="UTF-8"'
_KNOWN_PARAMETERS = {
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
}

log = logging.getLogger("onceonly.oauth")


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error: ``error`` code, a description, an HTTP status."""

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}


def _invalid_client(description: str = "Client authentication failed.") -> OAuthError:
    return OAuthError(
        "invalid_client", description, 401, headers={"WWW-Authenticate": BASIC_CHALLENGE}
    )


def issuer_url(settings: Settings) -> str:
    """The authorization server's issuer identifier (RFC 8414): the public base URL."""
    return settings.base_url


def token_endpoint_url(settings: Settings) -> str:
    """The absolute URL of the token endpoint (also an accepted assertion ``aud``)."""
    return settings.base_url + TOKEN_PATH


def jwks_url(settings: Settings) -> str:
    """The absolute URL of the JWK Set."""
    return settings.base_url + JWKS_PATH


def metadata_url(settings: Settings) -> str:
    """The absolute URL of the RFC 8414 metadata document."""
    return settings.base_url + METADATA_PATH


def key_ring(request: Request) -> KeyRing:
    """The application's token keys, loaded (or generated) on first use, kept on
    app.state and read again when ``onceonly keys`` replaces their files.

    Raises KeyFileError when a key file cannot be used.
    """
    state = request.app.state
    keys: Reloaded[KeyRing] | None = getattr(state, "oauth_token_keys", None)
    if keys is None:
        keys = token_keys(state.settings)
        state.oauth_token_keys = keys
    return keys.get()


def replay_cache(request: Request) -> ReplayCache:
    """The application's cache of used client assertion ``jti`` (see ReplayCache)."""
    state = request.app.state
    cache: ReplayCache | None = getattr(state, "oauth_replay_cache", None)
    if cache is None:
        cache = ReplayCache()
        state.oauth_replay_cache = cache
    return cache


async def token(request: Request) -> Response:
    """The token endpoint: client credentials grant only."""
    settings: Settings = request.app.state.settings
    address = client_address(request)
    enforce(request, TOKEN_IP, address)
    try:
        # An address that keeps failing to authenticate is refused before trying again.
        limiter(request).peek(TOKEN_FAILURES, address)
    except RateLimited as exc:
        raise too_many_requests(exc) from None
    try:
        form = await _read_form(request)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "The grant_type parameter is required.")
        if grant_type != GRANT_TYPE:
            raise OAuthError(
                "unsupported_grant_type", "Only the client_credentials grant is supported."
            )
        credentials = _credentials(request, form)
        try:
            client = await authenticate_client(
                credentials,
                audiences={token_endpoint_url(settings), issuer_url(settings)},
                replay_cache=replay_cache(request),
            )
        except ClientAuthenticationError as exc:
            raise _invalid_client(exc.description) from None
        try:
            scopes = granted_scopes(client, form.get("scope"))
        except InvalidScope as exc:
            raise OAuthError("invalid_scope", str(exc)) from None
    except OAuthError as exc:
        log.info("token request refused: %s (%s)", exc.error, exc.description)
        if exc.error == "invalid_client":
            with contextlib.suppress(RateLimited):
                limiter(request).hit(TOKEN_FAILURES, address)
        return JSONResponse(
            {"error": exc.error, "error_description": exc.description},
            status_code=exc.status,
            headers={**NO_STORE, **exc.headers},
        )
    enforce(request, TOKEN_CLIENT, client.client_id)
    access_token, expires_in = issue_access_token(
        client, scopes, settings, key_ring(request).signing
    )
    log.info("issued an access token to %s for %s", client.client_id, " ".join(scopes))
    return JSONResponse(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": " ".join(scopes),
        },
        headers=NO_STORE,
    )


async def _read_form(request: Request) -> dict[str, str]:
    """The form parameters of the body; blank ones dropped (RFC 6749 section 3.1).

    Raises OAuthError invalid_request for another media type (JSON included), a body
    over MAX_FORM_BYTES, bytes that are not UTF-8, or a repeated parameter.
    """
    media, _, params = request.headers.get("content-type", "").partition(";")
    charset = params.strip().lower().replace('"', "").replace(" ", "")
    if media.strip().lower() != FORM_MEDIA_TYPE or charset not in ("", "charset=utf-8"):
        raise OAuthError(
            "invalid_request",
            f"Send the token request as {FORM_MEDIA_TYPE} (RFC 6749 section 4.4.2), not "
            "JSON or any other format.",
        )
    too_large = OAuthError("invalid_request", f"The request body exceeds {MAX_FORM_BYTES} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise too_large
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "The request body is not a valid form.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            what = f"The {name} parameter" if name in _KNOWN_PARAMETERS else "A parameter"
            raise OAuthError("invalid_request", f"{what} is repeated.")
        if value:
            form[name] = value
    return form


def _credentials(request: Request, form: dict[str, str]) -> ClientSecret | ClientAssertion:
    """The client's credentials: HTTP Basic or a client assertion, exactly one of them."""
    authorization = request.headers.get("authorization")
    has_assertion = "client_assertion" in form or "client_assertion_type" in form
    if authorization is not None and has_assertion:
        raise OAuthError(
            "invalid_request", "Use one client authentication method, not HTTP Basic and a JWT."
        )
    if "client_secret" in form:
        raise _invalid_client(
            "Send the client secret with HTTP Basic (client_secret_basic), not in the body."
        )
    if authorization is not None:
        credentials = _basic_credentials(authorization)
        if form.get("client_id", credentials.client_id) != credentials.client_id:
            raise _invalid_client()
        return credentials
    if has_assertion:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise _invalid_client(f"The client_assertion_type must be {CLIENT_ASSERTION_TYPE}.")
        if "client_assertion" not in form:
            raise _invalid_client("The client_assertion parameter is missing.")
        return ClientAssertion(form["client_assertion"], form.get("client_id"))
    raise _invalid_client(
        "Client authentication is required: HTTP Basic (client_secret_basic) or a JWT "
        "assertion (private_key_jwt)."
    )


def _basic_credentials(authorization: str) -> ClientSecret:
    """RFC 6749 section 2.3.1: Basic base64(urlencoded(id) ":" urlencoded(secret))."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _invalid_client("Use HTTP Basic authentication or a client assertion.")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client() from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id or not secret:
        raise _invalid_client()
    return ClientSecret(unquote_plus(client_id), unquote_plus(secret))


async def jwks(request: Request) -> Response:
    """The JWK Set of every key whose access tokens are accepted."""
    # application/json rather than application/jwk-set+json: what JWKS fetchers expect.
    return JSONResponse(key_ring(request).jwks(), headers={"Cache-Control": "public, max-age=300"})


def metadata(settings: Settings) -> dict[str, Any]:
    """The RFC 8414 authorization server metadata for these settings.

    No authorization endpoint (no grant uses one), so ``response_types_supported``,
    which RFC 8414 requires, is empty.
    """
    return {
        "issuer": issuer_url(settings),
        "token_endpoint": token_endpoint_url(settings),
        "jwks_uri": jwks_url(settings),
        "grant_types_supported": [GRANT_TYPE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": sorted(ALL_ASSERTION_ALGORITHMS),
        "scopes_supported": sorted(SCOPES),
    }


async def server_metadata(request: Request) -> Response:
    """``/.well-known/oauth-authorization-server``."""
    return JSONResponse(
        metadata(request.app.state.settings), headers={"Cache-Control": "public, max-age=3600"}
    )


routes = [
    Route(TOKEN_PATH, token, methods=["POST"]),
    Route(JWKS_PATH, jwks, methods=["GET"]),
    Route(METADATA_PATH, server_metadata, methods=["GET"]),
]
