"""Tests for ledger.entry: the entry model, its canonical encoding, and commitments."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.entry import (
    ACCESS_TYPES,
    CONSENT_TYPES,
    Basis,
    Entry,
    commitment,
    decode_entry,
    encode_entry,
    format_time,
    new_opening,
    pseudonym,
    verify_commitment,
)
from ledger.errors import EntryError

COMMITMENT = bytes(range(32))

FULL = Entry(
    type="access.permitted",
    time="2025-03-01T09:30:00.123Z",
    actor_org="MIN-SOC",
    actor_system="benefits-portal",
    purpose="benefit.assessment",
    basis=Basis("consent", "c-7f3a"),
    categories=("tax.income", "population.address"),
    query_id="q-0001",
    subject_commitment=COMMITMENT,
    case_id="case-42",
    recipient_org="MIN-SOC",
    source_orgs=("TAX", "POP"),
)

# Written out by hand from RFC 8785: members sorted by key, no whitespace; optional
# fields left out; the commitment bytes 00..1f in unpadded base64url.
FULL_ENCODED = (
    b'{"actor_org":"MIN-SOC","actor_system":"benefits-portal",'
    b'"basis":{"kind":"consent","ref":"c-7f3a"},"case_id":"case-42",'
    b'"categories":["population.address","tax.income"],"purpose":"benefit.assessment",'
    b'"query_id":"q-0001","recipient_org":"MIN-SOC","source_orgs":["POP","TAX"],'
    b'"subject_commitment":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",'
    b'"time":"2025-03-01T09:30:00.123Z","type":"access.permitted","v":1}'
)

DENIED = Entry(
    type="access.denied",
    time="2025-12-31T23:59:59.999Z",
    actor_org="MIN-EDU",
    actor_system="grants",
    purpose="grant.check",
    basis=Basis("authority", "law-12.3"),
    categories=("income",),
    query_id="q-2",
    subject_commitment=COMMITMENT,
    bulk_job_id="bulk-9",
    hidden_until="2026-06-30",
    hidden_reason="investigation",
    reasons=("no-consent", "expired"),
)


def replace(entry: Entry, **changes: object) -> Entry:
    return dataclasses.replace(entry, **changes)  # type: ignore[arg-type]


def test_known_encoding() -> None:
    assert encode_entry(FULL) == FULL_ENCODED
    assert decode_entry(FULL_ENCODED) == FULL


def test_lists_are_kept_sorted() -> None:
    assert FULL.categories == ("population.address", "tax.income")
    assert FULL.source_orgs == ("POP", "TAX")
    assert DENIED.reasons == ("expired", "no-consent")


@pytest.mark.parametrize("entry", [FULL, DENIED])
def test_round_trip(entry: Entry) -> None:
    encoded = encode_entry(entry)
    assert decode_entry(encoded) == entry
    assert encode_entry(decode_entry(encoded)) == encoded
    document = json.loads(encoded)
    assert document["v"] == 1
    assert None not in document.values()


codes = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    kind = draw(st.sampled_from(sorted(CONSENT_TYPES | ACCESS_TYPES)))
    basis_kind = (
        "consent" if kind in CONSENT_TYPES else draw(st.sampled_from(["consent", "authority"]))
    )
    moment = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
    hidden = draw(st.booleans())
    return Entry(
        type=kind,
        time=format_time(moment.replace(tzinfo=UTC)),
        actor_org=draw(codes),
        actor_system=draw(codes),
        purpose=draw(codes),
        basis=Basis(basis_kind, draw(codes)),
        categories=tuple(draw(st.sets(codes, min_size=1, max_size=5))),
        query_id=draw(codes),
        subject_commitment=draw(st.binary(min_size=32, max_size=32)),
        case_id=draw(st.none() | codes),
        bulk_job_id=draw(st.none() | codes),
        hidden_until=draw(st.dates()).isoformat() if hidden else None,
        hidden_reason=draw(codes) if hidden else None,
        recipient_org=draw(st.none() | codes),
        source_orgs=tuple(draw(st.sets(codes, max_size=3))),
        reasons=tuple(draw(st.sets(codes, min_size=1, max_size=3)))
        if kind == "access.denied"
        else (),
    )


@settings(max_examples=100, deadline=None)
@given(entries())
def test_generated_entries_round_trip(entry: Entry) -> None:
    encoded = encode_entry(entry)
    assert decode_entry(encoded) == entry
    # The encoding is RFC 8785: re-serialising the parsed JSON canonically changes nothing.
    assert json.dumps(json.loads(encoded), sort_keys=True, separators=(",", ":")).encode() == (
        encoded
    )


def reference_encoding(entry: Entry) -> bytes:
    """The entry's document serialised by the rfc8785 package, the reference JCS."""
    document: dict[str, object] = {"v": 1}
    for field in dataclasses.fields(entry):
        value = getattr(entry, field.name)
        if value is None or value == ():
            continue
        if isinstance(value, Basis):
            value = {"kind": value.kind, "ref": value.ref}
        elif isinstance(value, bytes):
            value = base64.urlsafe_b64encode(value).rstrip(b"=").decode()
        elif isinstance(value, tuple):
            value = list(value)
        document[field.name] = value
    return rfc8785.dumps(document)


@settings(max_examples=500, deadline=None)
@given(entries())
def test_encoding_is_byte_identical_to_the_rfc8785_package(entry: Entry) -> None:
    assert encode_entry(entry) == reference_encoding(entry)


@pytest.mark.parametrize("entry", [FULL, DENIED])
def test_known_entries_match_the_rfc8785_package(entry: Entry) -> None:
    assert encode_entry(entry) == reference_encoding(entry)


@pytest.mark.parametrize(
    "data",
    [
        FULL_ENCODED.replace(b'"v":1}', b'"v":1,"extra":"x"}'),
        FULL_ENCODED.replace(b'"v":1}', b'"v":2}'),
        FULL_ENCODED.replace(b'"v":1}', b'"v":true}'),
        FULL_ENCODED.replace(b'"v":1}', b'"v":1.0}'),
        FULL_ENCODED.replace(b',"v":1}', b"}"),
        FULL_ENCODED.replace(b'{"actor_org"', b'{"v":1,"actor_org"'),
        FULL_ENCODED.replace(b'"v":1}', b'"v":1,"v":1}'),
        FULL_ENCODED.replace(b'"query_id":"q-0001",', b""),
        FULL_ENCODED.replace(b"{", b"{ ", 1),
        FULL_ENCODED + b"\n",
        FULL_ENCODED.replace(b'"case_id":"case-42"', b'"case_id":null'),
        FULL_ENCODED.replace(b'"source_orgs":["POP","TAX"]', b'"source_orgs":["TAX","POP"]'),
        FULL_ENCODED.replace(b'"source_orgs":["POP","TAX"]', b'"source_orgs":[]'),
        FULL_ENCODED.replace(b'"kind":"consent"', b'"kind":"contract"'),
        FULL_ENCODED.replace(b',"ref":"c-7f3a"', b',"ref":"c-7f3a","note":"x"'),
        FULL_ENCODED.replace(b'"query_id":"q-0001"', b'"query_id":1'),
        FULL_ENCODED.replace(
            b'"categories":["population.address","tax.income"]', b'"categories":"x"'
        ),
        FULL_ENCODED.replace(b"Hh8", b"Hh9"),
        FULL_ENCODED.replace(b"Hh8", b"Hh8="),
        FULL_ENCODED.replace(b"MIN-SOC", b"MIN\\u002dSOC", 1),
        b"[]",
        b"not json",
        b"\xff",
    ],
)
def test_anything_but_the_canonical_encoding_is_refused(data: bytes) -> None:
    with pytest.raises(EntryError):
        decode_entry(data)


def test_size_limit() -> None:
    many = tuple(f"category-{i:05d}-{'x' * 100}" for i in range(600))
    with pytest.raises(EntryError, match="over 65535"):
        encode_entry(replace(FULL, categories=many))
    with pytest.raises(EntryError):
        decode_entry(b" " * 65536)


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "consent.maybe"},
        {"time": "2025-03-01T09:30:00Z"},
        {"time": "2025-03-01T09:30:00.123456Z"},
        {"time": "2025-03-01T09:30:00.123+00:00"},
        {"time": "2025-02-30T09:30:00.123Z"},
        {"time": "2025-03-01 09:30:00.123Z"},
        {"actor_org": ""},
        {"actor_org": "MIN SOC"},
        {"purpose": "-leading-dash"},
        {"query_id": "q" * 129},
        {"case_id": ""},
        {"categories": ()},
        {"categories": ("a", "a")},
        {"categories": "tax"},
        {"subject_commitment": bytes(31)},
        {"reasons": ("no-consent",)},
        {"hidden_until": "2026-01-01"},
        {"hidden_reason": "investigation"},
        {"hidden_until": "2026-02-30", "hidden_reason": "x"},
        {"hidden_until": "20260101", "hidden_reason": "x"},
        {"type": "consent.given", "basis": Basis("authority", "law-1")},
    ],
)
def test_invalid_entries_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(EntryError):
        replace(FULL, **changes)


def test_denials_need_reasons() -> None:
    with pytest.raises(EntryError):
        replace(DENIED, reasons=())
    with pytest.raises(EntryError):
        Basis("permission", "x")


def test_format_time() -> None:
    cet = timezone(timedelta(hours=1))
    assert format_time(datetime(2025, 3, 1, 10, 30, 0, 123999, tzinfo=cet)) == (
        "2025-03-01T09:30:00.123Z"
    )
    assert format_time(datetime(2025, 3, 1, 9, 30, tzinfo=UTC)) == "2025-03-01T09:30:00.000Z"
    with pytest.raises(EntryError):
        format_time(datetime(2025, 3, 1, 9, 30))  # naive on purpose


# --- Pseudonyms and commitments ----------------------------------------------------------

KEY = bytes(range(100, 132))


def test_pseudonym_is_domain_separated_hmac() -> None:
    # Derived independently from the documented message layout.
    expected = hmac.new(KEY, b"onceonly/pseudonym/v1\nbsn\n123456782", hashlib.sha256).hexdigest()
    assert pseudonym("123456782", KEY, "bsn") == expected
    assert pseudonym("123456782", KEY, "kvk") != expected
    assert pseudonym("123456782", bytes(32), "bsn") != expected
    assert len(expected) == 64


def test_pseudonym_refuses_bad_arguments() -> None:
    for identifier, key, kind in [("1", bytes(15), "bsn"), ("", KEY, "bsn"), ("1", KEY, "a\nb")]:
        with pytest.raises(EntryError):
            pseudonym(identifier, key, kind)


def test_commitment_opens_only_with_its_opening_and_pseudonym() -> None:
    name = pseudonym("123456782", KEY, "bsn")
    opening = new_opening()
    value = commitment(opening, name)
    assert value == hmac.new(opening, name.encode(), hashlib.sha256).digest()
    assert len(value) == 32
    assert verify_commitment(value, opening, name)
    assert not verify_commitment(value, new_opening(), name)
    assert not verify_commitment(value, opening, pseudonym("123456783", KEY, "bsn"))
    assert not verify_commitment(value, opening[:15], name)
    with pytest.raises(EntryError):
        commitment(opening[:15], name)


def test_openings_are_fresh() -> None:
    openings = {new_opening() for _ in range(100)}
    assert len(openings) == 100
    assert all(len(o) == 16 for o in openings)
