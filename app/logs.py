"""Logging: one JSON object per line on standard error, with the request id, and
nothing personal or secret in it.

``onceonly serve`` hands ``logging_config(settings)`` to uvicorn, which applies it in
the server process and in every worker; the other commands call
``configure_logging(settings)`` and write text lines. Either way every record goes
through one handler (``LogHandler``) that

- adds the id of the request being served (``request_id``, from a context variable
  the request-context middleware sets);
- redacts what must never be written (``Redact``): credentials in headers, tokens,
  query strings, values labelled as secrets or person identifiers, identifier-shaped
  numbers and 64-hex-digit pseudonyms, and the deployment's own secrets;
- writes only the structured fields listed in ``SAFE_FIELDS``.

ONCEONLY_LOG_LEVEL sets the level of Onceonly's own loggers (``onceonly.*``). Other
libraries stay at WARNING whatever it says: the ORM and the database drivers log SQL
with its parameters (pseudonyms, hashes of session ids) at DEBUG, and uvicorn logs the
address of every connection.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from app.settings import Settings

#: The id of the request being served, set by app.request_context.RequestContext.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "onceonly_request_id", default=None
)

#: Structured fields a record may carry (``log.info(..., extra={...})``) that are
#: written out; any other attribute is left out.
SAFE_FIELDS = (
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "client_kind",
    "batch_size",
    "tree_size",
)

#: Libraries whose records at DEBUG or INFO would carry personal data or secrets: SQL
#: with its parameters, request URLs, connection addresses. Kept at WARNING.
QUIET_LIBRARIES = (
    "tortoise",
    "tortoise.db_client",
    "aiosqlite",
    "asyncpg",
    "httpx",
    "httpcore",
    "authlib",
    "multipart",
    "python_multipart",
    "asyncio",
)

REDACTED = "[redacted]"

# Whatever follows an authentication scheme is a credential.
_SCHEME_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic|dpop|negotiate)(\s+)[A-Za-z0-9\-._~+/]+=*")
# A JSON Web Token (JWS compact serialisation): header.payload.signature.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# The query of a URL or path: parameters may carry identifiers, codes and tokens.
_QUERY = re.compile(r"(?<=[\w/.\]-])\?[^\s\"'<>=]*=[^\s\"'<>]*")
# A value labelled with a sensitive name: key=value, key: value, 'key': 'value'. Short
# names that are also common words (code, sub, nonce, state) count only as key=value
# or as a quoted key.
_LABELLED = re.compile(
    r"(?i)(?P<key>(?:secret|token|password|passwd|authorization|cookie|session|csrf"
    r"|assertion|verifier|api[_-]?key|person[_-]?id|pseudonym|subject|opening|private)"
    r"[\w.-]*['\"]?\s*[:=]\s*['\"]?"
    r"|['\"](?:code|sub|nonce|state)['\"]\s*:\s*['\"]?|\b(?:code|sub|nonce|state)=)"
    r"(?P<value>[^\s'\",;&)}\]]+)"
)
# The password part of a URL (e.g. a database URL).
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@")
# A pseudonym (HMAC-SHA256 as 64 hex digits) or any other 256-bit secret in hex.
_HEX64 = re.compile(r"(?i)(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
# Numbers shaped like personal identifiers (a SIN has 9 digits, a health number 10).
_ID_NUMBER = re.compile(r"(?<![\w.:/-])\d{9,10}(?![\w.:/-])")


class Redact(logging.Filter):
    """Rewrites a record so that no credential, personal identifier or secret is in it.

    The message is formatted and redacted (``args`` are consumed), and so are the
    exception and stack texts and the string values of ``SAFE_FIELDS``. ``secrets``
    are literal values (the deployment's own secrets) that are replaced wherever they
    appear. A record is never dropped, only rewritten.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)
        # Field values repeat (methods, route templates, client kinds, most API paths):
        # each distinct short one is redacted once.
        self._redact_field = functools.lru_cache(maxsize=4096)(self.redact)

    def redact(self, text: str) -> str:
        """``text`` with every sensitive part replaced by ``[redacted]``."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = _SCHEME_CREDENTIALS.sub(rf"\1\2{REDACTED}", text)
        # The other patterns need a character most log lines lack: look for it first.
        if "eyJ" in text:
            text = _JWT.sub(REDACTED, text)
        if "@" in text:
            text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
        if "?" in text:
            text = _QUERY.sub("?" + REDACTED, text)
        if "=" in text or ":" in text:
            text = _LABELLED.sub(rf"\g<key>{REDACTED}", text)
        text = _HEX64.sub(REDACTED, text)
        return _ID_NUMBER.sub(REDACTED, text)

    def redact_traceback(self, text: str) -> str:
        """A traceback with its messages redacted but its lines of source code kept (they
        come from Onceonly's files, not from data, and say where it failed)."""
        lines = []
        in_source = False
        for line in text.splitlines():
            if in_source and line.startswith("    "):
                lines.append(line)
                continue
            in_source = line.startswith('  File "')
            lines.append(self.redact(line))
        return "\n".join(lines)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown of it
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact_traceback(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact_traceback(record.stack_info)
        for name in SAFE_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                redact = self._redact_field if len(value) <= 256 else self.redact
                setattr(record, name, redact(value))
        return True


class RequestId(logging.Filter):
    """Puts the id of the request being served (if any) on the record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


def _utc_time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: getattr(record, name)
        for name in SAFE_FIELDS
        if getattr(record, name, None) is not None
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, ``pid``, ``request_id`` inside a request, the safe
    structured fields, and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            document["request_id"] = request_id
        document.update(_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = record.stack_info
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message key=value ...`` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_utc_time(record), record.levelname, f"{record.name}:", record.getMessage()]
        request_id = getattr(record, "request_id", None)
        if request_id:
            parts.append(f"request_id={request_id}")
        parts.extend(f"{key}={value}" for key, value in _fields(record).items())
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes redacted records with their request id to the current standard error."""

    def __init__(self, format: str = "json", secrets: Iterable[str] = ()) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
        self.addFilter(RequestId())
        self.addFilter(Redact(secrets))

    # Look standard error up at each record: tests and tools replace sys.stderr.
    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def log_format(settings: Settings, default: str) -> str:
    """ONCEONLY_LOG_FORMAT, or the command's ``default`` (json for serve) when unset."""
    return settings.log_format or default


def deployment_secrets(settings: Settings) -> list[str]:
    """The secrets found in settings, to be replaced wherever they would be logged."""
    secrets = [settings.oidc_client_secret or "", settings.metrics_token or ""]
    password = urlsplit(settings.database_url).password
    if password:
        secrets.append(password)
    return [s for s in secrets if s]


def levels(settings: Settings) -> dict[str, str]:
    """The level of each logger: Onceonly's own at ONCEONLY_LOG_LEVEL, uvicorn's
    start-up and error messages at INFO at most, every other library at WARNING."""
    level = settings.log_level.upper()
    quiet = "ERROR" if level == "ERROR" else "WARNING"
    server = level if level in {"WARNING", "ERROR"} else "INFO"
    return {
        "": quiet,
        "onceonly": level,
        "uvicorn": server,
        "uvicorn.error": server,
        **dict.fromkeys(QUIET_LIBRARIES, quiet),
    }


def logging_config(settings: Settings, default_format: str = "json") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` schema for uvicorn's ``log_config``.

    uvicorn applies it in the server process and again in each worker process, so
    every process logs alike. Its own access log is left off (``access_log=False``):
    app.request_context writes one access line per request instead.
    """
    handler = {
        "()": "app.logs.LogHandler",
        "format": log_format(settings, default_format),
        "secrets": deployment_secrets(settings),
    }
    loggers: dict[str, Any] = {
        name: {"level": level, "handlers": [], "propagate": True}
        for name, level in levels(settings).items()
        if name
    }
    loggers["uvicorn.access"] = {"level": "WARNING", "handlers": [], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"onceonly": handler},
        "root": {"level": levels(settings)[""], "handlers": ["onceonly"]},
        "loggers": loggers,
    }


def configure_logging(settings: Settings, default_format: str = "text") -> None:
    """Send every record to one LogHandler on the root logger (for the CLI tools).

    Replaces a LogHandler installed before and leaves other handlers alone, so it
    can run more than once in a process.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, LogHandler)]:
        root.removeHandler(handler)
    fmt = log_format(settings, default_format)
    root.addHandler(LogHandler(fmt, deployment_secrets(settings)))
    for name, level in levels(settings).items():
        logging.getLogger(name or None).setLevel(level)
