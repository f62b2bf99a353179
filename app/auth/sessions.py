"""Server-side sessions of signed-in people: the session cookie, its timeouts, rotation.

The cookie ``onceonly_session`` holds a random 32-byte token; the database keeps only
its SHA-256 (``WebSession.token_hash``), so a copy of the database cannot be used to
take over a session. A session ends at sign-out, when a new sign-in replaces it
(rotation), after ``ONCEONLY_SESSION_IDLE_MINUTES`` without a request (sliding), or
``ONCEONLY_SESSION_MAX_HOURS`` after sign-in, whichever comes first.

The ID token kept for RP-initiated logout (``id_token_hint``) names the person by their
raw identifier, so it is stored encrypted under a key derived from the cookie's token:
without the person's cookie the stored value reads as noise.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.auth.models import WebSession
from app.keyfiles import load_or_create, random_key
from app.settings import Settings

SESSION_COOKIE = "onceonly_session"
ROLES = ("citizen", "auditor")

#: The idle deadline is pushed forward at most this often, so a busy person costs one
#: write a minute rather than one per request.
TOUCH_INTERVAL = timedelta(minutes=1)

_TOKEN_BYTES = 32
_MAX_COOKIE_CHARS = 128
_HINT_PREFIX = "v1."
_WEB_KEY_FILE = "web-signing.key"


class SignInRequired(Exception):
    """The page needs a signed-in person and there is none.

    The application answers with a redirect to ``/auth/sign-in?next=<next_path>``.
    """

    def __init__(self, next_path: str = "/") -> None:
        super().__init__(next_path)
        self.next_path = next_path


class SessionExpired(Exception):
    """The person's session ended by its idle or absolute timeout.

    The application answers with a page saying so, with a link to sign in again that
    comes back to ``next_path``.
    """

    def __init__(self, next_path: str = "/") -> None:
        super().__init__(next_path)
        self.next_path = next_path


class WrongRole(HTTPException):
    """The signed-in person does not have the role the page is for (a 403 page)."""

    def __init__(self, role: str) -> None:
        super().__init__(403)
        self.role = role


def token_hash(token: str) -> str:
    """The SHA-256 (hex) of a session token: the only form the database keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


def now() -> datetime:
    """The current time (UTC); tests move sessions in time by editing rows instead."""
    return datetime.now(UTC)


async def current_session(request: Request) -> WebSession | None:
    """The live session the request's cookie names, or None.

    Looked up once per request (cached on ``request.state``). A session past its idle
    or absolute deadline is ended server-side and not returned; ``session_expired``
    then says so, and ``require_person`` raises SessionExpired. An active session's
    idle deadline slides forward (written at most once a minute).
    """
    state = request.state
    if getattr(state, "web_session_loaded", False):
        return state.web_session
    session, expired = await _load(request)
    state.web_session = session
    state.web_session_expired = expired
    state.web_session_loaded = True
    return session


def session_expired(request: Request) -> bool:
    """Whether the request carried the cookie of a session that timed out.

    Meaningful after ``current_session(request)``.
    """
    return bool(getattr(request.state, "web_session_expired", False))


async def require_person(request: Request, role: str = "citizen") -> WebSession:
    """The signed-in person's session, for a page meant for ``role``.

    Raises SessionExpired when their session timed out, SignInRequired when nobody is
    signed in (both carry the page to come back to), and WrongRole (a 403) when the
    person is signed in with another role.
    """
    session = await current_session(request)
    if session is None:
        back = next_path_of(request)
        if session_expired(request):
            raise SessionExpired(back)
        raise SignInRequired(back)
    if session.role != role:
        raise WrongRole(role)
    return session


def next_path_of(request: Request) -> str:
    """Where to come back after signing in: this page for a GET, else the home page."""
    if request.method not in ("GET", "HEAD"):
        return "/"
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def start_session(
    request: Request,
    *,
    pseudonym: str,
    role: str,
    display_name: str | None,
    id_token: str | None,
) -> tuple[WebSession, str]:
    """Open a new session and return it with the token for the cookie.

    Any session the request's cookie names is ended first (rotation: a token known
    before sign-in is never the one that carries the signed-in session).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    settings: Settings = request.app.state.settings
    old = request.cookies.get(SESSION_COOKIE)
    if old and len(old) <= _MAX_COOKIE_CHARS:
        await WebSession.filter(token_hash=token_hash(old), ended_at=None).update(ended_at=now())
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    started = now()
    session = await WebSession.create(
        token_hash=token_hash(token),
        pseudonym=pseudonym,
        role=role,
        display_name=display_name[:200] if display_name else None,
        csrf_token=secrets.token_urlsafe(32),
        id_token_hint=_seal(id_token, token) if id_token else None,
        idle_until=started + timedelta(minutes=settings.session_idle_minutes),
        expires_at=started + timedelta(hours=settings.session_max_hours),
    )
    request.state.web_session = session
    request.state.web_session_expired = False
    request.state.web_session_loaded = True
    return session, token


async def end_session(session: WebSession) -> None:
    """End ``session`` server-side: its cookie no longer signs anybody in."""
    ended = now()
    await WebSession.filter(id=session.id, ended_at=None).update(ended_at=ended)
    session.ended_at = ended


def id_token_hint(session: WebSession, request: Request) -> str | None:
    """The ID token of the sign-in that opened ``session``, for RP-initiated logout.

    None when there is none or the request's cookie cannot open it.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not session.id_token_hint or not token:
        return None
    return _open(session.id_token_hint, token)


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    """``onceonly_session=<token>; HttpOnly; SameSite=Lax; Path=/`` (+ ``Secure`` over
    https). No Max-Age: the browser forgets it when it closes; the server's timeouts
    end it anyway."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/",
        secure=secure_cookies(settings),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    """Tell the browser to forget the session cookie."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=secure_cookies(settings), httponly=True, samesite="lax"
    )


def secure_cookies(settings: Settings) -> bool:
    """Whether cookies carry ``Secure``: when Onceonly is served over https."""
    return settings.base_url.startswith("https://")


def web_signing_key(app: Starlette) -> bytes:
    """The 32-byte key behind signed cookies and form fields, generated on first use
    into ``var/secrets/web-signing.key`` (0600). Raises KeyFileError when unusable."""
    key: bytes | None = getattr(app.state, "web_signing_key", None)
    if key is None:
        settings: Settings = app.state.settings
        key = load_or_create(settings.secrets_dir / _WEB_KEY_FILE, random_key(32))
        app.state.web_signing_key = key
    return key


def signer(app: Starlette, purpose: str) -> URLSafeTimedSerializer:
    """A signer of timestamped values for cookies and forms (itsdangerous) under the
    web signing key, one ``purpose`` per use so that a value signed for one cannot be
    replayed as another."""
    return URLSafeTimedSerializer(web_signing_key(app), salt=f"onceonly.{purpose}")


async def _load(request: Request) -> tuple[WebSession | None, bool]:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > _MAX_COOKIE_CHARS:
        return None, False
    row = await WebSession.get_or_none(token_hash=token_hash(token))
    if row is None:
        return None, False
    if row.ended_at is not None:
        # Ended by a timeout noticed earlier (not by sign-out or rotation, which end a
        # session before its deadlines).
        return None, row.ended_at >= min(row.idle_until, row.expires_at)
    moment = now()
    if moment >= row.idle_until or moment >= row.expires_at:
        await WebSession.filter(id=row.id, ended_at=None).update(ended_at=moment)
        return None, True
    settings: Settings = request.app.state.settings
    idle_until = moment + timedelta(minutes=settings.session_idle_minutes)
    if idle_until - row.idle_until >= TOUCH_INTERVAL:
        await WebSession.filter(id=row.id, ended_at=None).update(idle_until=idle_until)
        row.idle_until = idle_until
    return row, False


def _hint_key(token: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"onceonly id_token_hint"
    ).derive(token.encode())


def _seal(id_token: str, token: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_hint_key(token)).encrypt(nonce, id_token.encode(), b"id_token_hint")
    return _HINT_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def _open(stored: str, token: str) -> str | None:
    if not stored.startswith(_HINT_PREFIX):
        return None
    try:
        raw = base64.urlsafe_b64decode(stored[len(_HINT_PREFIX) :])
        plain = AESGCM(_hint_key(token)).decrypt(raw[:12], raw[12:], b"id_token_hint")
    except (ValueError, InvalidTag):
        return None
    return plain.decode()


async def purge_ended_sessions(keep: timedelta = timedelta(days=1)) -> int:
    """Delete sessions that ended or expired more than ``keep`` ago; return how many."""
    cutoff = now() - keep
    ended = await WebSession.filter(ended_at__lt=cutoff).delete()
    expired = await WebSession.filter(expires_at__lt=cutoff).delete()
    idle = await WebSession.filter(idle_until__lt=cutoff).delete()
    return ended + expired + idle
