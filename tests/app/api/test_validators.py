"""The API's two validators of a request body say the same thing.

read_json first asks a compiled validator (fastjsonschema) whether a body fits its
schema, and asks jsonschema for the field errors only when it does not. A body the
compiled one lets through is never checked again, so the two must agree on every
document: here on documents built from each request schema's own fields, with values
that fit, values of the wrong type and values just outside every limit, plus unknown
and missing fields.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from app.api import schemas
from app.api.edge import _validators

REQUEST_SCHEMAS = {
    "holdings": schemas.HOLDINGS_REQUEST,
    "consent request": schemas.CONSENT_REQUEST,
    "access check": schemas.ACCESS_CHECK,
    "batch access check": schemas.BATCH_ACCESS_CHECK,
}

# Strings that fit or just miss the schemas' patterns and lengths.
TRICKY_TEXT = st.sampled_from(
    [
        "",
        "a",
        "MTO",
        "licence-renewal",
        "-starts-with-dash",
        "has space",
        "x" * 63,
        "x" * 64,
        "x" * 65,
        "x" * 128,
        "x" * 129,
        "trailing\n",
        "nul\x00inside",
        "caf\u00e9",
        "2026-02-30",
        "2026-11-25",
        "2026-11-25T10:00:00Z",
        "2026-11-25T10:00:00+05:00",
        "2026-11-25T24:00:00Z",
        "P7Y",
        "P",
        "https://example.org/back",
        "http://localhost:8000/x",
        "http://example.org/",
        "0b6f7c9e-2c1d-4e8a-9f0b-1a2b3c4d5e6f",
        "0B6F7C9E-2C1D-4E8A-9F0B-1A2B3C4D5E6F",
    ]
)
ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False)
    | TRICKY_TEXT
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=8,
)


def value_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values near ``schema``: ones that fit it often, anything else now and then."""
    kind = schema.get("type")
    if kind == "object":
        return document_for(schema)
    if kind == "array":
        item = value_for(schema.get("items", {}))
        most = schema.get("maxItems", 5)
        sizes = sorted({0, 1, 2, min(most, 3), most, most + 1})
        fitting = st.sampled_from(sizes).flatmap(
            lambda n: (
                st.lists(item, min_size=min(n, 3), max_size=min(n, 3))
                if n <= 3
                else st.lists(item, min_size=1, max_size=2).map(lambda xs, n=n: (xs * n)[:n])
            )
        )
        return fitting | ANY_VALUE
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | ANY_VALUE
    if kind == "boolean":
        return st.booleans() | st.integers(0, 1) | ANY_VALUE
    return TRICKY_TEXT | ANY_VALUE


def document_for(
    schema: dict[str, Any], base: dict[str, Any] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Documents of ``schema``'s fields: each kept from ``base`` (a body that fits),
    left out, or given a value near its own schema; sometimes an unknown field more."""
    properties: dict[str, Any] = schema.get("properties", {})
    base = base or {}
    choices = {}
    for name, sub in properties.items():
        options = [st.just(_MISSING), value_for(sub)]
        if name in base:
            options = [st.just(base[name])] * 4 + options
        choices[name] = st.one_of(options)
    fields = st.fixed_dictionaries(choices).map(
        lambda d: {k: v for k, v in d.items() if v is not _MISSING}
    )
    extra = st.dictionaries(st.sampled_from(["unknown", "PERSON_ID", ""]), ANY_VALUE, max_size=1)
    maybe_extra = st.one_of(st.just({}), st.just({}), st.just({}), extra)
    return st.tuples(fields, maybe_extra).map(lambda pair: {**pair[0], **pair[1]})


_MISSING = object()
_TERMS = {"recipient": "MTO", "categories": ["address"], "purpose": "licence-renewal"}
#: A body that fits each schema, for document_for to start from.
FITTING = {
    "holdings": {"holdings": [{"person_id": "p-1", "category": "address", "retention": "P7Y"}]},
    "consent request": {
        "person_id": "p-1",
        "sources": ["MPBSDP"],
        "categories": ["address"],
        "purpose": "licence-renewal",
        "valid_until": "2027-11-25T10:00:00Z",
        "notice_text": "We would like your address.",
        "return_url": "https://example.org/back",
    },
    "access check": {**_TERMS, "person_id": "p-1", "query_id": "q-1"},
    "batch access check": {**_TERMS, "persons": [{"person_id": "p-1", "query_id": "q-1"}]},
}


@pytest.mark.parametrize("name", sorted(REQUEST_SCHEMAS))
def test_the_compiled_validator_agrees_with_jsonschema(name: str) -> None:
    schema = REQUEST_SCHEMAS[name]
    full = Draft202012Validator(schema)
    fast = _validators(schema)
    assert full.is_valid(FITTING[name])
    seen = {True: 0, False: 0}

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(document_for(schema, FITTING[name]) | ANY_VALUE)
    def agree(document: Any) -> None:
        expected = full.is_valid(document)
        assert fast.accepts(document) == expected, document
        seen[expected] += 1

    agree()
    # The documents were near enough to the schema to reach both answers.
    assert seen[True] > 0 and seen[False] > 0, seen


def test_a_fitting_body_is_accepted_and_a_wrong_one_refused() -> None:
    check = _validators(schemas.ACCESS_CHECK)
    body = {
        "person_id": "person-1",
        "query_id": "q-1",
        "recipient": "MTO",
        "categories": ["address"],
        "purpose": "licence-renewal",
    }
    assert check.accepts(body)
    assert not check.accepts({**body, "categories": ["address", "address"]})  # uniqueItems
    assert not check.accepts({**body, "query_id": "x" * 65})
    assert not check.accepts({**body, "surplus": 1})
    assert not check.accepts({k: v for k, v in body.items() if k != "purpose"})
