"""Helpers for tests of the audit portal: the demo data, an auditor's pages, and
ledger entries made to order (as a ministry would append them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ledger.entry import Basis, Entry, commitment, format_time
from ledger.sequencer import Subject

AUDITOR = "demo-auditor"
ALEX = "demo-resident-alex"

#: Every page an auditor can open (GET).
AUDIT_PAGES = (
    "/audit",
    "/audit/ledger",
    "/audit/ledger/0",
    "/audit/statistics",
    "/audit/anomalies",
    "/audit/hidden",
    "/audit/disputes",
    "/audit/verify",
    "/audit/accesses",
)


def access_entry(
    *,
    pseudonym: str,
    basis: Basis,
    moment: datetime | None = None,
    entry_type: str = "access.permitted",
    actor: str = "FIN",
    system: str = "tax-benefits",
    purpose: str = "eligibility",
    recipient: str = "MCCSS",
) -> tuple[Entry, Subject]:
    """An access decision about ``pseudonym`` with a fresh opening."""
    subject = Subject.new(pseudonym)
    entry = Entry(
        type=entry_type,
        time=format_time(moment or datetime.now(UTC)),
        actor_org=actor,
        actor_system=system,
        purpose=purpose,
        basis=basis,
        categories=("income",),
        query_id=str(uuid.uuid4()),
        subject_commitment=commitment(subject.opening, subject.pseudonym),
        source_orgs=(actor,),
        recipient_org=recipient,
        reasons=("no_consent",) if entry_type == "access.denied" else (),
    )
    return entry, subject
