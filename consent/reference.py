"""The reference data every check names: ministries, data categories, purposes and
legal authorities, read at most every 30 seconds per database."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from tortoise.connection import get_connection

from consent.decision import AuthorityState
from consent.models import DataCategory, LegalAuthority, Ministry, Purpose


@dataclass(frozen=True)
class Reference:
    """The codes an access check may name, and the legal authorities, as loaded."""

    ministries: frozenset[str]
    categories: frozenset[str]
    purposes: frozenset[str]
    authorities: dict[str, AuthorityState]

    def unknown(self, field: str, kind: str, codes: Iterable[str]) -> list[dict[str, str]]:
        """A field error for each code of ``kind`` (ministry, data category, purpose)
        that does not exist, in code order."""
        known = {
            "ministry": self.ministries,
            "data category": self.categories,
            "purpose": self.purposes,
        }[kind]
        return [
            {"field": field, "message": f"unknown {kind} {code}"}
            for code in sorted(set(codes) - known)
        ]


_REFERENCE_MAX_AGE = 30.0
_reference: tuple[int, float, Reference] | None = None


async def reference(max_age: float = _REFERENCE_MAX_AGE) -> Reference:
    """The reference data, read at most every ``max_age`` seconds per database.

    It changes only when an operator seeds or edits it; reading it on every check was
    the largest cost of a decision. Keyed by the connection, so another database never
    sees this one's codes.
    """
    global _reference
    db = get_connection("default")
    connection = hash(
        (
            type(db).__name__,
            getattr(db, "filename", None),
            getattr(db, "database", None),
            getattr(db, "host", None),
            getattr(db, "schema", None),
        )
    )
    now = time.monotonic()
    if _reference is not None:
        key, loaded, cached = _reference
        if key == connection and now - loaded < max_age:
            return cached
    authorities = {}
    for row in await LegalAuthority.all():
        permits = row.permits or {}
        authorities[row.code] = AuthorityState(
            code=row.code,
            sources=frozenset(permits.get("sources", [])),
            recipients=frozenset(permits.get("recipients", [])),
            categories=frozenset(permits.get("categories", [])),
            purposes=frozenset(permits.get("purposes", [])),
            consent_required=row.consent_required,
        )
    loaded_reference = Reference(
        ministries=frozenset(await Ministry.all().values_list("code", flat=True)),
        categories=frozenset(await DataCategory.all().values_list("code", flat=True)),
        purposes=frozenset(await Purpose.all().values_list("code", flat=True)),
        authorities=authorities,
    )
    _reference = (connection, now, loaded_reference)
    return loaded_reference
