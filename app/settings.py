"""Settings: read once from ``ONCEONLY_*`` environment variables into one typed object.

Nothing else in Onceonly reads ``os.environ``; the settings object is built at
start-up and passed to whatever needs it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PREFIX = "ONCEONLY_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: The ledger's origin unless ONCEONLY_LOG_ORIGIN says otherwise. It names the log in
#: every checkpoint and key, so it must never change for a deployment: production sets
#: its own (e.g. "onceonly.ontario.ca/ledger").
DEFAULT_LOG_ORIGIN = "onceonly.localhost/ledger"

SUPPORTED_DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql")


class SettingsError(ValueError):
    """A setting is missing or has a value Onceonly cannot use.

    The message names the environment variable and says what it expects.
    """


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
    log_origin: str = DEFAULT_LOG_ORIGIN
    pseudonym_key_file: Path | None = None
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
        log_origin = env.pop("LOG_ORIGIN", "") or DEFAULT_LOG_ORIGIN
        if not log_origin or any(c.isspace() for c in log_origin) or "+" in log_origin:
            raise SettingsError("ONCEONLY_LOG_ORIGIN must be one word without spaces or '+'")
        key_file = env.pop("PSEUDONYM_KEY_FILE", "")
        return cls(
            var_dir=var_dir,
            database_url=database_url,
            host=host,
            port=port,
            base_url=base_url.rstrip("/"),
            demo=demo,
            log_level=log_level,
            log_origin=log_origin,
            pseudonym_key_file=Path(key_file) if key_file else None,
            extra=env,
        )


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"ONCEONLY_{name} must be true or false, not {raw!r}")


def _parse_port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(
            f"ONCEONLY_PORT must be a number from 1 to 65535, not {raw!r}"
        ) from None
    if not 1 <= port <= 65535:
        raise SettingsError(f"ONCEONLY_PORT must be a number from 1 to 65535, not {raw!r}")
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
