"""People as the consent domain knows them: keyed pseudonyms of the provincial person id.

Ministries name a person by the identifier of the provincial digital identity (the
same one the identity provider gives as ``sub``); it is turned into a pseudonym on
arrival and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.entry import pseudonym

PERSON_ID_KIND = "sub"


@dataclass(frozen=True)
class Pseudonymizer:
    """Turns person identifiers into pseudonyms with the server's secret key."""

    key: bytes

    def __repr__(self) -> str:
        return "Pseudonymizer(key=<secret>)"

    def person(self, person_id: str) -> str:
        """The pseudonym of a provincial person identifier."""
        return pseudonym(person_id, self.key, kind=PERSON_ID_KIND)


@dataclass(frozen=True)
class Actor:
    """Who acts: a ministry system through an API client, or Onceonly itself."""

    ministry: str
    system: str
    client_id: str | None = None


PORTAL = Actor("ONCEONLY", "portal")
EXPIRY = Actor("ONCEONLY", "expiry")
