"""Factories for test data: entries and subjects with sensible defaults."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from ledger.entry import Basis, Entry, commitment, format_time
from ledger.sequencer import Subject

_query = itertools.count()


def make_subject(pseudonym: str = "a" * 64) -> Subject:
    return Subject.new(pseudonym)


def make_entry(subject: Subject | None = None, **overrides: Any) -> Entry:
    """A valid access.permitted entry; any field can be overridden."""
    subject = subject or make_subject()
    fields: dict[str, Any] = {
        "type": "access.permitted",
        "time": format_time(datetime.now(UTC)),
        "actor_org": "MTO",
        "actor_system": "driver-licensing",
        "purpose": "licence-renewal",
        "basis": Basis("authority", "HTA-205"),
        "categories": ("address",),
        "query_id": f"q-{next(_query)}",
        "subject_commitment": commitment(subject.opening, subject.pseudonym),
        "recipient_org": "MTO",
        "source_orgs": ("MPBSDP",),
    }
    fields.update(overrides)
    return Entry(**fields)
