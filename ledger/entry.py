"""Ledger entries: what one logged event says, and its one canonical byte encoding.

An entry records a consent event or an access decision about a data subject, who is
named only by a commitment: ``HMAC-SHA256(key=opening, msg=pseudonym)``, where the
pseudonym is a keyed hash of the subject's identifier and the 16-byte opening is kept
off the log. Whoever is given the opening and the pseudonym can check that an entry is
about that subject; nobody else can link entries to one another or to a person.

Encoding: RFC 8785 (JCS) JSON of an object with ``"v": 1`` and the entry's fields under
their own names; optional fields are omitted when absent (None or empty), the
commitment is base64url without padding, and times are RFC 3339 UTC with exactly
millisecond precision (``2025-03-01T09:30:00.000Z``). The encoding is limited to 65535
bytes so that an entry fits a tlog-tiles entry bundle. Decoding accepts only that exact
encoding: any other byte string, unknown field or invalid value raises EntryError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, date, datetime
from typing import Any

from ledger.errors import EntryError

VERSION = 1
MAX_ENTRY_SIZE = 0xFFFF  # the tlog-tiles entry bundle's uint16 length prefix
COMMITMENT_SIZE = 32
OPENING_SIZE = 16
MIN_PSEUDONYM_KEY_SIZE = 16

CONSENT_TYPES = frozenset(
    {
        "consent.requested",
        "consent.given",
        "consent.refused",
        "consent.withdrawn",
        "consent.expired",
    }
)
ACCESS_TYPES = frozenset({"access.permitted", "access.denied"})
ENTRY_TYPES = CONSENT_TYPES | ACCESS_TYPES
BASIS_KINDS = frozenset({"consent", "authority"})

#: Codes and identifiers: organisation, system, purpose, category and reason codes and
#: consent, authority, query, case and bulk job ids.
CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_BASE64URL_32 = re.compile(r"[A-Za-z0-9_-]{43}")
_PSEUDONYM_DOMAIN = b"onceonly/pseudonym/v1\n"


@dataclass(frozen=True)
class Basis:
    """The legal basis of an event: a consent (by consent id) or an authority (by code)."""

    kind: str
    ref: str

    def __post_init__(self) -> None:
        if self.kind not in BASIS_KINDS:
            raise EntryError(f"basis kind {self.kind!r} is not one of {sorted(BASIS_KINDS)}")
        _check_code(self.ref, "basis ref")


@dataclass(frozen=True)
class Entry:
    """One ledger entry. Constructing it validates every field; see the module docstring.

    ``categories`` (at least one), ``source_orgs`` and ``reasons`` may be given in any
    order and are kept sorted; duplicates are refused. Consent events need a consent basis;
    ``reasons`` is required for, and only allowed on, ``access.denied``;
    ``hidden_until`` (an ISO date) and ``hidden_reason`` come together or not at all.
    Raises EntryError for any invalid field.
    """

    type: str
    time: str
    actor_org: str
    actor_system: str
    purpose: str
    basis: Basis
    categories: tuple[str, ...]
    query_id: str
    subject_commitment: bytes
    case_id: str | None = None
    bulk_job_id: str | None = None
    hidden_until: str | None = None
    hidden_reason: str | None = None
    recipient_org: str | None = None
    source_orgs: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in ENTRY_TYPES:
            raise EntryError(f"entry type {self.type!r} is not one of {sorted(ENTRY_TYPES)}")
        _check_time(self.time)
        for name in ("actor_org", "actor_system", "purpose", "query_id"):
            _check_code(getattr(self, name), name)
        for name in ("case_id", "bulk_job_id", "hidden_reason", "recipient_org"):
            value = getattr(self, name)
            if value is not None:
                _check_code(value, name)
        if not isinstance(self.basis, Basis):
            raise EntryError("basis must be a Basis")
        if self.type in CONSENT_TYPES and self.basis.kind != "consent":
            raise EntryError(f"{self.type} needs a consent basis")
        for name in ("categories", "source_orgs", "reasons"):
            # Normalised here so that equal entries have equal encodings.
            object.__setattr__(self, name, _sorted_codes(getattr(self, name), name))
        if not self.categories:
            raise EntryError("an entry concerns at least one category")
        if (self.type == "access.denied") != bool(self.reasons):
            raise EntryError("reasons are required for, and only allowed on, access.denied")
        if (self.hidden_until is None) != (self.hidden_reason is None):
            raise EntryError("hidden_until and hidden_reason come together")
        if self.hidden_until is not None:
            _check_date(self.hidden_until)
        if not isinstance(self.subject_commitment, bytes):
            raise EntryError("subject_commitment must be bytes")
        if len(self.subject_commitment) != COMMITMENT_SIZE:
            raise EntryError(f"subject_commitment must be {COMMITMENT_SIZE} bytes")


def format_time(moment: datetime) -> str:
    """Return ``moment`` as an entry time: RFC 3339 UTC, milliseconds, 'Z'.

    Sub-millisecond digits are truncated. Raises EntryError for a naive datetime.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise EntryError("entry times must be timezone-aware")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def encode_entry(entry: Entry) -> bytes:
    """Return the canonical encoding of ``entry``. Raises EntryError above 65535 bytes."""
    # Written out member by member in RFC 8785 order (keys sorted). Every value is a
    # validated code, time, date or base64url string (none needs escaping), a list of
    # them, or the version 1; tests/ledger/test_entry.py checks the output against the
    # rfc8785 package byte for byte.
    basis = entry.basis
    parts = [
        '{"actor_org":"',
        entry.actor_org,
        '","actor_system":"',
        entry.actor_system,
        '","basis":{"kind":"',
        basis.kind,
        '","ref":"',
        basis.ref,
        '"}',
    ]
    if entry.bulk_job_id is not None:
        parts += (',"bulk_job_id":"', entry.bulk_job_id, '"')
    if entry.case_id is not None:
        parts += (',"case_id":"', entry.case_id, '"')
    parts += (',"categories":["', '","'.join(entry.categories), '"]')
    if entry.hidden_reason is not None:
        parts += (',"hidden_reason":"', entry.hidden_reason, '"')
    if entry.hidden_until is not None:
        parts += (',"hidden_until":"', entry.hidden_until, '"')
    parts += (',"purpose":"', entry.purpose, '","query_id":"', entry.query_id, '"')
    if entry.reasons:
        parts += (',"reasons":["', '","'.join(entry.reasons), '"]')
    if entry.recipient_org is not None:
        parts += (',"recipient_org":"', entry.recipient_org, '"')
    if entry.source_orgs:
        parts += (',"source_orgs":["', '","'.join(entry.source_orgs), '"]')
    parts += (
        ',"subject_commitment":"',
        _base64url(entry.subject_commitment),
        '","time":"',
        entry.time,
        '","type":"',
        entry.type,
        '","v":1}',
    )
    encoded = "".join(parts).encode()
    if len(encoded) > MAX_ENTRY_SIZE:
        raise EntryError(f"entry encodes to {len(encoded)} bytes, over {MAX_ENTRY_SIZE}")
    return encoded


def decode_entry(data: bytes) -> Entry:
    """Decode an entry, accepting only the exact canonical encoding of a valid entry.

    Raises EntryError for oversized or malformed JSON, duplicate or unknown fields, a
    missing field, a value of the wrong type, an invalid entry, or bytes that differ
    from the entry's canonical encoding.
    """
    if len(data) > MAX_ENTRY_SIZE:
        raise EntryError(f"entry of {len(data)} bytes is over {MAX_ENTRY_SIZE}")
    try:
        document = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_unique_keys,
            parse_float=_refuse_number,
            parse_constant=_refuse_number,
        )
    except (ValueError, RecursionError) as error:  # also a number past int()'s digit limit,
        # or nesting deeper than the recursion limit
        raise EntryError(f"entry is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise EntryError("entry is not a JSON object")
    entry = _entry_from_document(document)
    if encode_entry(entry) != data:
        raise EntryError("entry is not canonically encoded")
    return entry


def pseudonym(identifier: str, key: bytes, kind: str) -> str:
    """Return the pseudonym of a subject identifier of the given kind, as 64 hex digits.

    It is HMAC-SHA256 keyed by the server's secret ``key`` over
    ``"onceonly/pseudonym/v1\\n" || kind || "\\n" || identifier``, so identifiers of
    different kinds never share a pseudonym. Raises EntryError for an empty identifier,
    an invalid kind code, or a key shorter than 16 bytes.
    """
    if len(key) < MIN_PSEUDONYM_KEY_SIZE:
        raise EntryError(f"pseudonym key must be at least {MIN_PSEUDONYM_KEY_SIZE} bytes")
    _check_code(kind, "identifier kind")
    if not identifier:
        raise EntryError("identifier is empty")
    message = _PSEUDONYM_DOMAIN + kind.encode() + b"\n" + identifier.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def new_opening() -> bytes:
    """Return a fresh random 16-byte commitment opening."""
    return secrets.token_bytes(OPENING_SIZE)


def commitment(opening: bytes, pseudonym: str) -> bytes:
    """Return the subject commitment HMAC-SHA256(key=opening, msg=pseudonym), 32 bytes.

    Raises EntryError unless ``opening`` is 16 bytes.
    """
    if len(opening) != OPENING_SIZE:
        raise EntryError(f"commitment opening must be {OPENING_SIZE} bytes")
    return hmac.new(opening, pseudonym.encode(), hashlib.sha256).digest()


def verify_commitment(value: bytes, opening: bytes, pseudonym: str) -> bool:
    """Whether ``value`` is the commitment to ``pseudonym`` under ``opening``."""
    if len(opening) != OPENING_SIZE:
        return False
    return hmac.compare_digest(value, commitment(opening, pseudonym))


_FIELDS = {field.name for field in fields(Entry)}
_REQUIRED = {field.name for field in fields(Entry) if field.default is MISSING}


def _entry_from_document(document: dict[str, Any]) -> Entry:
    unknown = set(document) - _FIELDS - {"v"}
    if unknown:
        raise EntryError(f"unknown entry fields {sorted(unknown)}")
    missing = (_REQUIRED | {"v"}) - set(document)
    if missing:
        raise EntryError(f"missing entry fields {sorted(missing)}")
    if type(document["v"]) is not int or document["v"] != VERSION:
        raise EntryError(f"unsupported entry version {document['v']!r}")
    values: dict[str, Any] = {}
    for name, value in document.items():
        if name == "v":
            continue
        if name == "basis":
            if not isinstance(value, dict) or set(value) != {"kind", "ref"}:
                raise EntryError("basis must be an object with kind and ref")
            values[name] = Basis(_string(value["kind"], "basis kind"), _string(value["ref"], name))
        elif name in ("categories", "source_orgs", "reasons"):
            if not isinstance(value, list):
                raise EntryError(f"{name} must be a list")
            values[name] = tuple(_string(item, name) for item in value)
        elif name == "subject_commitment":
            text = _string(value, name)
            if not _BASE64URL_32.fullmatch(text):
                raise EntryError("subject_commitment is not 32 bytes of unpadded base64url")
            try:
                values[name] = base64.urlsafe_b64decode(text + "=")
            except binascii.Error:
                raise EntryError("subject_commitment is not base64url") from None
        else:
            values[name] = _string(value, name)
    return Entry(**values)


def _base64url(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def _string(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise EntryError(f"{name} must be a string")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise EntryError("entry has a duplicate field")
    return document


def _refuse_number(text: str) -> float:
    # Entries carry no numbers but the version; a float would not survive JCS unchanged.
    raise EntryError(f"entry contains a non-integer number {text!r}")


def _check_code(value: object, name: str) -> None:
    if not isinstance(value, str) or not CODE.fullmatch(value):
        raise EntryError(f"{name} {value!r} is not a valid code")


def _sorted_codes(values: Iterable[str], name: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise EntryError(f"{name} must be a sequence of codes, not a string")
    items = tuple(values)
    for value in items:
        _check_code(value, name)
    if len(set(items)) != len(items):
        raise EntryError(f"{name} has duplicates")
    return tuple(sorted(items))


def _check_time(value: object) -> None:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise EntryError(f"time {value!r} is not RFC 3339 UTC with milliseconds")
    try:
        # For text of the pattern above this accepts exactly what strptime with
        # "%Y-%m-%dT%H:%M:%S.%fZ" does (checked exhaustively), about fifty times faster.
        datetime.fromisoformat(value)
    except ValueError:
        raise EntryError(f"time {value!r} is not a real time") from None


def _check_date(value: object) -> None:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise EntryError(f"hidden_until {value!r} is not an ISO date")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise EntryError(f"hidden_until {value!r} is not a real date") from None
