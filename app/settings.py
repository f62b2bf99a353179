"""Settings: read once from ``ONCEONLY_*`` environment variables into one typed object.

Nothing else in Onceonly reads ``os.environ``; the settings object is built at
start-up and passed to whatever needs it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PREFIX = "ONCEONLY_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: The ledger's origin unless ONCEONLY_LOG_ORIGIN says otherwise. It names the log in
#: every checkpoint and key, so it must never change for a deployment: production sets
#: its own (e.g. "onceonly.ontario.ca/ledger").
DEFAULT_LOG_ORIGIN = "onceonly.localhost/ledger"

_WITNESS = re.compile(r"(?P<vkey>[^\s=]+(?:=[^\s=]+)*?)=(?P<url>https?://\S+)")

SUPPORTED_DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql")

#: Where the built-in development OpenID Connect provider is mounted (demo mode only);
#: in demo mode the default ONCEONLY_OIDC_ISSUER is BASE_URL followed by this path.
DEV_OIDC_PATH = "/dev-oidc"
DEMO_OIDC_CLIENT_ID = "onceonly-portal"


class SettingsError(ValueError):
    """A setting is missing or has a value Onceonly cannot use.

    The message names the environment variable and says what it expects.
    """


#: X-Forwarded-For is believed only from these peers unless ONCEONLY_TRUSTED_PROXIES
#: says otherwise: a reverse proxy on the same machine (uvicorn's own default).
DEFAULT_TRUSTED_PROXIES = "127.0.0.1,::1"


@dataclass(frozen=True)
class Limits:
    """Rate, size and time limits against load and abuse (README "Limits").

    Rates are requests per minute per process (each worker counts on its own); 0 turns
    a rate limit off. ``trusted_proxies`` are the networks whose X-Forwarded-For header
    names the client; sizes are bytes and timeouts seconds.
    """

    sign_in_per_ip: int = 30
    token_per_client: int = 60
    token_per_ip: int = 60
    token_failures_per_ip: int = 30
    access_checks_per_client: int = 100_000
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
        ipaddress.ip_network(item) for item in DEFAULT_TRUSTED_PROXIES.split(",")
    )
    max_body_bytes: int = 1024 * 1024
    max_form_bytes: int = 64 * 1024
    max_header_bytes: int = 32 * 1024
    header_timeout: int = 20
    body_timeout: int = 30
    keep_alive_timeout: int = 5
    max_connections: int = 1000
    backlog: int = 2048


@dataclass(frozen=True)
class Settings:
    """Every setting Onceonly has, with its default.

    ``var_dir`` holds the embedded database and generated secrets; ``base_url`` is
    the public address used in links, issuer names and checkpoint origins.
    """

    var_dir: Path = Path("var")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    base_url: str = "http://127.0.0.1:8000"
    demo: bool = False
    log_level: str = "info"
    log_format: str | None = None  # json or text; None: the command's own (json for serve)
    metrics_token: str | None = field(default=None, repr=False)
    metrics_multiprocess_dir: Path | None = None
    log_origin: str = DEFAULT_LOG_ORIGIN
    pseudonym_key_file: Path | None = None
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    oidc_subject_claim: str = "sub"
    oidc_auditor_claim: str = "onceonly_role"
    oidc_auditor_value: str = "auditor"
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "onceonly@localhost"
    smtp_starttls: bool = False
    witnesses: tuple[tuple[str, str], ...] = ()
    witness_quorum: int = 0
    limits: Limits = field(default_factory=Limits)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def database_kind(self) -> str:
        """``"sqlite"`` or ``"postgres"``."""
        scheme = urlsplit(self.database_url).scheme
        return "sqlite" if scheme == "sqlite" else "postgres"

    @property
    def secrets_dir(self) -> Path:
        """Where generated secrets live (created with 0700, files with 0600)."""
        return self.var_dir / "secrets"

    @property
    def uses_dev_oidc(self) -> bool:
        """Whether sign-in goes to the built-in development provider (demo mode only)."""
        return self.demo and self.oidc_issuer == self.base_url + DEV_OIDC_PATH

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping.

        Raises SettingsError with the variable's name for any bad value.
        """
        env = {k[len(PREFIX) :]: v for k, v in environ.items() if k.startswith(PREFIX)}
        var_dir = Path(env.pop("VAR_DIR", "var"))
        database_url = env.pop("DATABASE_URL", "") or f"sqlite://{var_dir}/onceonly.sqlite3"
        _check_database_url(database_url)
        host = env.pop("HOST", "127.0.0.1")
        _check_host(host)
        port = _parse_port(env.pop("PORT", "8000"))
        base_url = env.pop("BASE_URL", "") or f"http://{_url_host(host)}:{port}"
        _check_base_url(base_url)
        demo = _parse_bool("DEMO", env.pop("DEMO", "false"))
        log_level = env.pop("LOG_LEVEL", "info").lower()
        if log_level not in {"debug", "info", "warning", "error"}:
            raise SettingsError(
                f"ONCEONLY_LOG_LEVEL must be debug, info, warning or error, not {log_level!r}"
            )
        log_format = env.pop("LOG_FORMAT", "").strip().lower() or None
        if log_format not in {None, "json", "text"}:
            raise SettingsError(f"ONCEONLY_LOG_FORMAT must be json or text, not {log_format!r}")
        metrics_token = _parse_metrics_token(env.pop("METRICS_TOKEN", ""))
        # prometheus-client's own variable: its multiprocess mode (several workers).
        multiprocess_dir = environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
        log_origin = env.pop("LOG_ORIGIN", "") or DEFAULT_LOG_ORIGIN
        if not log_origin or any(c.isspace() for c in log_origin) or "+" in log_origin:
            raise SettingsError("ONCEONLY_LOG_ORIGIN must be one word without spaces or '+'")
        key_file = env.pop("PSEUDONYM_KEY_FILE", "")
        oidc = _parse_oidc(env, base_url.rstrip("/"), demo)
        idle_minutes = _pop_count(env, "SESSION_IDLE_MINUTES", default=30, maximum=24 * 60)
        max_hours = _pop_count(env, "SESSION_MAX_HOURS", default=12, maximum=7 * 24)
        smtp_host = env.pop("SMTP_HOST", "") or None
        if smtp_host is not None:
            _check_host(smtp_host)
        smtp_port = _parse_port(env.pop("SMTP_PORT", "25"), "SMTP_PORT")
        smtp_from = env.pop("SMTP_FROM", "") or "onceonly@localhost"
        if "@" not in smtp_from or any(c.isspace() for c in smtp_from):
            raise SettingsError(f"ONCEONLY_SMTP_FROM must be an e-mail address, not {smtp_from!r}")
        smtp_starttls = _parse_bool("SMTP_STARTTLS", env.pop("SMTP_STARTTLS", "false"))
        witnesses = _parse_witnesses(env.pop("WITNESSES", ""))
        witness_quorum = _parse_quorum(env.pop("WITNESS_QUORUM", ""), len(witnesses))
        limits = _parse_limits(env)
        return cls(
            var_dir=var_dir,
            database_url=database_url,
            host=host,
            port=port,
            base_url=base_url.rstrip("/"),
            demo=demo,
            log_level=log_level,
            log_format=log_format,
            metrics_token=metrics_token,
            metrics_multiprocess_dir=Path(multiprocess_dir) if multiprocess_dir else None,
            log_origin=log_origin,
            pseudonym_key_file=Path(key_file) if key_file else None,
            **oidc,
            session_idle_minutes=idle_minutes,
            session_max_hours=max_hours,
            smtp_host=smtp_host,
            smtp_port=smtp_port,
            smtp_from=smtp_from,
            smtp_starttls=smtp_starttls,
            witnesses=witnesses,
            witness_quorum=witness_quorum,
            limits=limits,
            extra=env,
        )


def _parse_witnesses(raw: str) -> tuple[tuple[str, str], ...]:
    """``vkey=URL,vkey=URL``: the witnesses (C2SP tlog-witness) to submit checkpoints to.

    Each vkey must be a cosignature/v1 (type 0x04) verifier key; each URL the witness's
    http(s) submission prefix. Empty items and a witness named twice are refused.
    """
    from ledger.errors import NoteError
    from ledger.note import COSIGNATURE_V1, parse_vkey

    if not raw.strip():
        return ()
    witnesses: list[tuple[str, str]] = []
    for item in raw.split(","):
        match = _WITNESS.fullmatch(item.strip())
        if match is None:
            raise SettingsError(
                f"ONCEONLY_WITNESSES must be comma-separated vkey=URL pairs, not {item!r}"
            )
        vkey, url = match["vkey"], match["url"].rstrip("/")
        try:
            verifier = parse_vkey(vkey)
        except NoteError as exc:
            raise SettingsError(f"ONCEONLY_WITNESSES: {vkey!r}: {exc}") from None
        if verifier.key_type != COSIGNATURE_V1:
            raise SettingsError(f"ONCEONLY_WITNESSES: {vkey!r} is not a cosignature/v1 key")
        parts = urlsplit(url)
        if not parts.hostname or parts.query or parts.fragment:
            raise SettingsError(f"ONCEONLY_WITNESSES: {url!r} is not a witness URL")
        if any(vkey == known for known, _ in witnesses):
            raise SettingsError(f"ONCEONLY_WITNESSES names {verifier.name} twice")
        witnesses.append((vkey, url))
    return tuple(witnesses)


def _parse_quorum(raw: str, witnesses: int) -> int:
    raw = raw.strip() or "0"
    if not (raw.isascii() and raw.isdigit()) or int(raw) > witnesses:
        raise SettingsError(
            f"ONCEONLY_WITNESS_QUORUM must be a number from 0 to {witnesses} (the number of "
            f"ONCEONLY_WITNESSES), not {raw!r}"
        )
    return int(raw)


_METRICS_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{32,256}=*")


def _parse_metrics_token(raw: str) -> str | None:
    """ONCEONLY_METRICS_TOKEN: the bearer token a scraper that is not on loopback sends."""
    token = raw.strip()
    if not token:
        return None
    if not _METRICS_TOKEN.fullmatch(token):
        raise SettingsError(
            "ONCEONLY_METRICS_TOKEN must be at least 32 characters of letters, digits and "
            "-._~+/ (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"ONCEONLY_{name} must be true or false, not {raw!r}")


def _parse_oidc(env: dict[str, str], base_url: str, demo: bool) -> dict[str, Any]:
    """The OpenID Connect sign-in settings (popped from ``env``).

    Without an issuer sign-in is off (the sign-in page says it is not configured); in
    demo mode the issuer defaults to the built-in development provider, whose client
    secret is generated under var/secrets when ONCEONLY_OIDC_CLIENT_SECRET is not set.
    """
    builtin = base_url + DEV_OIDC_PATH
    issuer = env.pop("OIDC_ISSUER", "").strip() or (builtin if demo else "")
    client_id = env.pop("OIDC_CLIENT_ID", "").strip() or (DEMO_OIDC_CLIENT_ID if demo else "")
    secret = env.pop("OIDC_CLIENT_SECRET", "")
    claims = {
        name: env.pop(name, "").strip() or default
        for name, default in (
            ("OIDC_SUBJECT_CLAIM", "sub"),
            ("OIDC_AUDITOR_CLAIM", "onceonly_role"),
            ("OIDC_AUDITOR_VALUE", "auditor"),
        )
    }
    for name, value in claims.items():
        if any(c.isspace() for c in value):
            raise SettingsError(f"ONCEONLY_{name} must be one word without spaces, not {value!r}")
    if issuer:
        _check_issuer(issuer, demo)
        if not client_id:
            raise SettingsError(
                "ONCEONLY_OIDC_CLIENT_ID is required when ONCEONLY_OIDC_ISSUER is set: "
                "the client id the identity provider registered for Onceonly"
            )
        if not secret and not (demo and issuer == builtin):
            raise SettingsError(
                "ONCEONLY_OIDC_CLIENT_SECRET is required when ONCEONLY_OIDC_ISSUER is set: "
                "the client secret the identity provider registered for Onceonly"
            )
    return {
        "oidc_issuer": issuer or None,
        "oidc_client_id": client_id or None,
        "oidc_client_secret": secret or None,
        "oidc_subject_claim": claims["OIDC_SUBJECT_CLAIM"],
        "oidc_auditor_claim": claims["OIDC_AUDITOR_CLAIM"],
        "oidc_auditor_value": claims["OIDC_AUDITOR_VALUE"],
    }


def _check_issuer(issuer: str, demo: bool) -> None:
    parts = urlsplit(issuer)
    local = parts.hostname in {"localhost", "127.0.0.1", "::1"}
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or parts.query
        or parts.fragment
        or (parts.scheme == "http" and not (demo or local))
    ):
        raise SettingsError(
            "ONCEONLY_OIDC_ISSUER must be the identity provider's https URL, without query "
            f"or fragment (http only for localhost or in demo mode), not {issuer!r}"
        )


def _pop_count(env: dict[str, str], name: str, *, default: int, maximum: int) -> int:
    raw = env.pop(name, "").strip() or str(default)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise SettingsError(f"ONCEONLY_{name} must be a number from 1 to {maximum}, not {raw!r}")
    return int(raw)


#: (variable, Limits field, minimum, maximum) of every numeric limit (the default is
#: the field's); a rate's minimum 0 turns it off.
_LIMITS = (
    ("RATE_LIMIT_SIGN_IN", "sign_in_per_ip", 0, 1_000_000),
    ("RATE_LIMIT_TOKEN", "token_per_client", 0, 1_000_000),
    ("RATE_LIMIT_TOKEN_IP", "token_per_ip", 0, 1_000_000),
    ("RATE_LIMIT_TOKEN_FAILURES", "token_failures_per_ip", 0, 1_000_000),
    ("RATE_LIMIT_ACCESS_CHECKS", "access_checks_per_client", 0, 100_000_000),
    ("MAX_BODY_BYTES", "max_body_bytes", 1024, 1024**3),
    ("MAX_FORM_BYTES", "max_form_bytes", 1024, 1024**3),
    ("MAX_HEADER_BYTES", "max_header_bytes", 1024, 1024 * 1024),
    ("HEADER_TIMEOUT", "header_timeout", 1, 3600),
    ("BODY_TIMEOUT", "body_timeout", 1, 3600),
    ("KEEP_ALIVE_TIMEOUT", "keep_alive_timeout", 1, 3600),
    ("MAX_CONNECTIONS", "max_connections", 0, 1_000_000),
    ("BACKLOG", "backlog", 1, 65535),
)


def _parse_limits(env: dict[str, str]) -> Limits:
    """The rate, size and time limits (popped from ``env``); see Limits."""
    values: dict[str, Any] = {}
    defaults = Limits()
    for name, key, minimum, maximum in _LIMITS:
        raw = env.pop(name, "").strip() or str(getattr(defaults, key))
        digits = raw.isascii() and raw.isdigit() and len(raw) <= 12
        if not digits or not minimum <= int(raw) <= maximum:
            off = " (0 turns it off)" if minimum == 0 else ""
            raise SettingsError(
                f"ONCEONLY_{name} must be a number from {minimum} to {maximum}{off}, not {raw!r}"
            )
        values[key] = int(raw)
    proxies = env.pop("TRUSTED_PROXIES", DEFAULT_TRUSTED_PROXIES)
    networks = []
    for item in filter(None, (part.strip() for part in proxies.split(","))):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError:
            raise SettingsError(
                "ONCEONLY_TRUSTED_PROXIES must be comma-separated IP addresses or networks "
                f"(CIDR, e.g. 10.0.0.0/8), not {item!r}"
            ) from None
    return Limits(trusted_proxies=tuple(networks), **values)


def _parse_port(raw: str, name: str = "PORT") -> int:
    message = f"ONCEONLY_{name} must be a number from 1 to 65535, not {raw!r}"
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(message) from None
    if not 1 <= port <= 65535:
        raise SettingsError(message)
    return port


def _check_host(host: str) -> None:
    if not host or any(c.isspace() for c in host):
        raise SettingsError(f"ONCEONLY_HOST must be a host name or IP address, not {host!r}")


def _url_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def _check_database_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in SUPPORTED_DATABASE_SCHEMES:
        raise SettingsError(
            "ONCEONLY_DATABASE_URL must start with sqlite://, postgres:// or postgresql://, "
            f"not {_redact(url)!r}"
        )
    if parts.scheme == "sqlite" and not (parts.netloc + parts.path):
        raise SettingsError("ONCEONLY_DATABASE_URL sqlite:// needs a file path")
    if parts.scheme != "sqlite":
        if not parts.hostname:
            raise SettingsError("ONCEONLY_DATABASE_URL needs a host name for PostgreSQL")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise SettingsError(f"ONCEONLY_DATABASE_URL has a bad port: {_redact(url)!r}") from None
        if not parts.path.strip("/"):
            raise SettingsError("ONCEONLY_DATABASE_URL needs a database name for PostgreSQL")


def _check_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SettingsError(f"ONCEONLY_BASE_URL must be an http(s) URL, not {url!r}")


def _redact(url: str) -> str:
    """The URL with any password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
