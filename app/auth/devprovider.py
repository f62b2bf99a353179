"""The built-in development OpenID Connect provider, for demo mode only.

Mounted under ``/dev-oidc`` when ONCEONLY_DEMO is true, so that ``make run`` signs in
through the same OpenID Connect code path as production without an outside provider.
It is not an identity provider: anyone may sign in as any demo resident, and every
page it shows says so.

What it offers (OpenID Connect Core, Discovery, RP-Initiated Logout):

- ``/.well-known/openid-configuration`` and ``/jwks`` (an ES256 key generated into
  ``var/secrets/dev-oidc-signing.pem``);
- ``/authorize``: a page to pick a demo resident or the demo auditor; answers with a
  one-time code bound to the client, the redirect URI, the PKCE challenge (S256,
  required) and the nonce;
- ``/token``: the authorization code grant, with ``client_secret_basic`` or
  ``client_secret_post``; answers an ID token and an access token for ``/userinfo``;
- ``/end-session``: RP-initiated logout back to a page of Onceonly.

Its one registered client is exactly the portal: ONCEONLY_OIDC_CLIENT_ID, the portal's
client secret and ``BASE_URL/auth/callback``. Codes and access tokens are kept in
memory (lost at restart, not shared between worker processes): fine for a demo with
one process, which is what ``make run`` starts.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import jwt
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from app.auth.csrf import CsrfFailed
from app.auth.oidc import CALLBACK_PATH, client_secret
from app.i18n import N_
from app.keyfiles import KeyFileError, load_or_create
from app.oauth.keys import key_id
from app.ratelimit import DEV_AUTHORIZE, client_address, enforce
from app.seed import DEMO_RESIDENTS
from app.settings import DEV_OIDC_PATH, Settings

CODE_SECONDS = 60
ACCESS_TOKEN_SECONDS = 300
ID_TOKEN_SECONDS = 300
FORM_SECONDS = 600
SIGNING_ALG = "ES256"
KEY_FILE = "dev-oidc-signing.pem"
FORM_COOKIE = "onceonly_dev_oidc"
MAX_GRANTS = 10_000

DEMO_AUDITOR = ("demo-auditor", N_("Demo Auditor (privacy commissioner)"))

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PKCE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def people() -> list[tuple[str, str]]:
    """Who can sign in: the demo residents, then the demo auditor (subject, name)."""
    return [*DEMO_RESIDENTS, DEMO_AUDITOR]


@dataclass(frozen=True)
class ProviderKey:
    """The ES256 key that signs the provider's ID tokens, with its RFC 7638 ``kid``."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK."""
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": SIGNING_ALG, "use": "sig"}


def signing_key(settings: Settings) -> ProviderKey:
    """The provider's signing key, generated on first use (var/secrets, 0600).

    Raises KeyFileError when the file is not an EC P-256 PEM private key.
    """
    path = Path(settings.secrets_dir) / KEY_FILE

    def generate() -> bytes:
        return ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    try:
        key = serialization.load_pem_private_key(load_or_create(path, generate), password=None)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} is not an EC P-256 key")
    return ProviderKey(key_id(key.public_key()), key)


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Grant:
    """What a code or an access token stands for."""

    client_id: str
    redirect_uri: str
    subject: str
    name: str
    nonce: str | None
    code_challenge: str
    expires_at: float


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error answer of the token or userinfo endpoint."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class DevProvider:
    """The provider's endpoints and its in-memory codes and access tokens."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuer = settings.base_url + DEV_OIDC_PATH
        self.client_id = settings.oidc_client_id or ""
        self.redirect_uri = settings.base_url + CALLBACK_PATH
        self.codes: dict[str, Grant] = {}
        self.access_tokens: dict[str, Grant] = {}
        self._forms = URLSafeTimedSerializer(secrets.token_bytes(32), salt="dev-oidc.authorize")
        self._key: ProviderKey | None = None
        self._secret: str | None = None

    @property
    def key(self) -> ProviderKey:
        if self._key is None:
            self._key = signing_key(self.settings)
        return self._key

    @property
    def secret(self) -> str:
        if self._secret is None:
            self._secret = client_secret(self.settings)
        return self._secret

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/.well-known/openid-configuration", self.discovery, methods=["GET"]),
            Route("/jwks", self.jwks, methods=["GET"]),
            Route("/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/userinfo", self.userinfo, methods=["GET", "POST"]),
            Route("/end-session", self.end_session, methods=["GET", "POST"]),
        ]

    async def discovery(self, request: Request) -> Response:
        base = self.issuer
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": base + "/authorize",
                "token_endpoint": base + "/token",
                "jwks_uri": base + "/jwks",
                "userinfo_endpoint": base + "/userinfo",
                "end_session_endpoint": base + "/end-session",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [SIGNING_ALG],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile"],
                "claims_supported": ["sub", "name", self.settings.oidc_auditor_claim],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.jwk()]})

    # -- authorization endpoint ------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        enforce(request, DEV_AUTHORIZE, client_address(request))
        if request.method == "POST":
            return await self._authorize_answer(request)
        params = dict(request.query_params)
        if params.get("client_id") != self.client_id or not self.client_id:
            return self._page(request, "auth/dev_error.html", {"problem": "client"}, 400)
        if params.get("redirect_uri") != self.redirect_uri:
            return self._page(request, "auth/dev_error.html", {"problem": "redirect_uri"}, 400)
        state = params.get("state")
        problem = _authorization_problem(params)
        if problem:
            return self._redirect_error(problem[0], problem[1], state)
        if params.get("prompt") == "none":
            return self._redirect_error("login_required", "the demo provider always asks", state)
        binding = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(16)
        signed = self._forms.dumps(
            {
                "state": state,
                "nonce": params.get("nonce"),
                "code_challenge": params["code_challenge"],
                "binding": binding,
            }
        )
        response = self._page(request, "auth/dev_authorize.html", {"authorization": signed}, 200)
        response.set_cookie(
            FORM_COOKIE,
            binding,
            path=DEV_OIDC_PATH,
            httponly=True,
            samesite="lax",
            secure=self.settings.base_url.startswith("https://"),
        )
        return response

    async def _authorize_answer(self, request: Request) -> Response:
        form = await request.form()
        try:
            asked = self._forms.loads(str(form.get("authorization", "")), max_age=FORM_SECONDS)
        except BadData:
            raise CsrfFailed() from None
        binding = request.cookies.get(FORM_COOKIE, "")
        if not hmac.compare_digest(str(asked.get("binding", "")).encode(), binding.encode()):
            raise CsrfFailed()
        if form.get("action") == "cancel":
            return self._redirect_error("access_denied", "the person cancelled", asked["state"])
        names = dict(people())
        subject = str(form.get("subject", ""))
        if subject not in names:
            context = {"authorization": form.get("authorization"), "missing_choice": True}
            return self._page(request, "auth/dev_authorize.html", context, 400)
        code = secrets.token_urlsafe(32)
        _remember(
            self.codes,
            code,
            Grant(
                client_id=self.client_id,
                redirect_uri=self.redirect_uri,
                subject=subject,
                name=names[subject],
                nonce=asked.get("nonce"),
                code_challenge=asked["code_challenge"],
                expires_at=_now() + CODE_SECONDS,
            ),
        )
        params = [("code", code), ("iss", self.issuer)]
        if asked.get("state") is not None:
            params.append(("state", asked["state"]))
        return RedirectResponse(add_params_to_uri(self.redirect_uri, params), status_code=303)

    def _redirect_error(self, error: str, description: str, state: str | None) -> Response:
        params = [("error", error), ("error_description", description), ("iss", self.issuer)]
        if state is not None:
            params.append(("state", state))
        return RedirectResponse(add_params_to_uri(self.redirect_uri, params), status_code=303)

    # -- token endpoint -----------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        try:
            form = await request.form()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            self._authenticate(request, fields)
            grant = self._redeem(fields)
        except OAuthError as exc:
            headers = dict(NO_STORE)
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="dev-oidc"'
            body = {"error": exc.error, "error_description": exc.description}
            return JSONResponse(body, status_code=exc.status, headers=headers)
        access_token = secrets.token_urlsafe(32)
        lifetime = _now() + ACCESS_TOKEN_SECONDS
        _remember(self.access_tokens, access_token, replace(grant, expires_at=lifetime))
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": ACCESS_TOKEN_SECONDS,
                "scope": "openid profile",
                "id_token": self.id_token(grant),
            },
            headers=NO_STORE,
        )

    def id_token(self, grant: Grant) -> str:
        """An ID token for ``grant``, signed with the provider's key."""
        issued = int(_now())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.subject,
            "aud": grant.client_id,
            "exp": issued + ID_TOKEN_SECONDS,
            "iat": issued,
            "auth_time": issued,
            "name": grant.name,
            **self._role_claims(grant.subject),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        return jwt.encode(
            claims, self.key.private_key, algorithm=SIGNING_ALG, headers={"kid": self.key.kid}
        )

    def _role_claims(self, subject: str) -> dict[str, str]:
        if subject == DEMO_AUDITOR[0]:
            return {self.settings.oidc_auditor_claim: self.settings.oidc_auditor_value}
        return {}

    def _authenticate(self, request: Request, fields: dict[str, str]) -> None:
        """Check the client's credentials (HTTP Basic, or in the form)."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            if "client_secret" in fields:
                raise OAuthError("invalid_request", "use one client authentication method")
            try:
                raw = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "bad Basic credentials", 401) from None
            client_id, _, secret = raw.partition(":")
            # RFC 6749 section 2.3.1 form-encodes both before Basic; many clients
            # (Authlib among them) do not, so either spelling is accepted.
            candidates = [(client_id, secret), (unquote_plus(client_id), unquote_plus(secret))]
        else:
            candidates = [(fields.get("client_id", ""), fields.get("client_secret", ""))]
        if not self.client_id or not any(self._registered(*pair) for pair in candidates):
            raise OAuthError("invalid_client", "client authentication failed", 401)

    def _registered(self, client_id: str, secret: str) -> bool:
        good_id = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        good_secret = hmac.compare_digest(secret.encode(), self.secret.encode())
        return good_id and good_secret

    def _redeem(self, fields: dict[str, str]) -> Grant:
        if fields.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "only authorization_code is supported")
        # A code is spent by its first use, even a failed one (RFC 6749 section 4.1.2).
        grant = self.codes.pop(fields.get("code", ""), None)
        if grant is None or grant.expires_at <= _now():
            raise OAuthError("invalid_grant", "the code is unknown, used or expired")
        if grant.client_id != self.client_id:
            raise OAuthError("invalid_grant", "the code was issued to another client")
        if fields.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        verifier = fields.get("code_verifier", "")
        if not _PKCE.match(verifier):
            raise OAuthError("invalid_grant", "a code_verifier is required (PKCE)")
        challenge = create_s256_code_challenge(verifier)
        if not hmac.compare_digest(challenge.encode(), grant.code_challenge.encode()):
            raise OAuthError("invalid_grant", "code_verifier does not match code_challenge")
        return grant

    # -- userinfo and logout -------------------------------------------------------------

    async def userinfo(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        grant = self.access_tokens.get(token)
        if grant is None or grant.expires_at <= _now():
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"', **NO_STORE},
            )
        claims = {"sub": grant.subject, "name": grant.name, **self._role_claims(grant.subject)}
        return JSONResponse(claims, headers=NO_STORE)

    async def end_session(self, request: Request) -> Response:
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            params.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
        hint = params.get("id_token_hint")
        if hint and not self._issued_by_us(hint):
            return self._page(request, "auth/dev_error.html", {"problem": "id_token_hint"}, 400)
        target = params.get("post_logout_redirect_uri")
        if target:
            base = self.settings.base_url
            if not (target == base or target.startswith(base + "/")):
                context = {"problem": "post_logout_redirect_uri"}
                return self._page(request, "auth/dev_error.html", context, 400)
            state = params.get("state")
            if state:
                target = add_params_to_uri(target, [("state", state)])
            return RedirectResponse(target, status_code=303)
        return self._page(request, "auth/dev_signed_out.html", {}, 200)

    def _issued_by_us(self, id_token: str) -> bool:
        """Whether ``id_token`` carries our signature for our client (expired is fine:
        a hint names a past sign-in)."""
        try:
            jwt.decode(
                id_token,
                self.key.private_key.public_key(),
                algorithms=[SIGNING_ALG],
                audience=self.client_id,
                issuer=self.issuer,
                options={"verify_exp": False},
            )
        except jwt.PyJWTError:
            return False
        return True

    def _page(
        self, request: Request, template: str, context: dict[str, Any], status: int
    ) -> Response:
        return request.app.state.templates.TemplateResponse(
            request,
            template,
            {"people": people(), "auditor": DEMO_AUDITOR[0], **context},
            status_code=status,
            headers=NO_STORE,
        )


def mount(settings: Settings) -> list[BaseRoute]:
    """The provider's routes under ``/dev-oidc``, for create_app in demo mode."""
    return [Mount(DEV_OIDC_PATH, routes=DevProvider(settings).routes(), name="dev_oidc")]


def _authorization_problem(params: dict[str, str]) -> tuple[str, str] | None:
    """What is wrong with an authorization request, as (error, description), or None."""
    if params.get("response_type") != "code":
        return "unsupported_response_type", "only response_type=code is supported"
    if "openid" not in params.get("scope", "").split():
        return "invalid_scope", "the scope must include openid"
    if not params.get("code_challenge"):
        return "invalid_request", "PKCE is required: send code_challenge"
    if params.get("code_challenge_method") != "S256":
        return "invalid_request", "only code_challenge_method=S256 is supported"
    if not _PKCE.match(params["code_challenge"]):
        return "invalid_request", "code_challenge is malformed"
    return None


def _remember(store: dict[str, Grant], key: str, grant: Grant) -> None:
    """Add to an in-memory store, dropping what has expired and, past MAX_GRANTS, the
    oldest entries (a page anyone can post to must not grow memory without bound)."""
    moment = _now()
    for old in [k for k, g in store.items() if g.expires_at <= moment]:
        del store[old]
    while len(store) >= MAX_GRANTS:
        del store[next(iter(store))]
    store[key] = grant
