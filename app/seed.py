"""``onceonly seed``: reference data, and with ``--demo`` demo residents and their activity.

Both are idempotent: running them again changes nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from tortoise.transactions import in_transaction

from app.keys import pseudonym_key
from app.reference_data import DATA_CATEGORIES, LEGAL_AUTHORITIES, MINISTRIES, PURPOSES
from app.settings import Settings
from consent.models import (
    Consent,
    ConsentStatus,
    DataCategory,
    Holding,
    LegalAuthority,
    Ministry,
    Purpose,
    System,
)
from ledger.entry import Basis, Entry, commitment, format_time, pseudonym
from ledger.log import TransparencyLog
from ledger.models import LedgerOpening
from ledger.sequencer import Subject

DEMO_NAMESPACE = uuid.UUID("6f1d0c1e-5b9a-4d7e-9c41-0a3f5d2b7e10")

# The demo residents the built-in OpenID Connect provider offers (identifier = its "sub").
DEMO_RESIDENTS = [
    ("demo-resident-alex", "Alex Tremblay"),
    ("demo-resident-sam", "Sam Nguyen"),
]

# (resident, system, category, authority, retention)
DEMO_HOLDINGS = [
    ("demo-resident-alex", "ohip", "health-number", "HIA-10", "P10Y"),
    ("demo-resident-alex", "ohip", "address", "HIA-10", "P10Y"),
    ("demo-resident-alex", "driver-licensing", "driver-licence", "HTA-205", "P6Y"),
    ("demo-resident-alex", "driver-licensing", "address", "HTA-205", "P6Y"),
    ("demo-resident-alex", "tax-benefits", "income", "TTA-172", "P7Y"),
    ("demo-resident-alex", "serviceontario", "name", "FIPPA-42-1-c", "P2Y"),
    ("demo-resident-alex", "serviceontario", "address", "FIPPA-42-1-c", "P2Y"),
    ("demo-resident-alex", "osap", "education-record", None, "P7Y"),
    ("demo-resident-sam", "ohip", "health-number", "HIA-10", "P10Y"),
    ("demo-resident-sam", "ontario-works", "income", "OWA-74", "P7Y"),
    ("demo-resident-sam", "ontario-works", "family", "OWA-74", "P7Y"),
]

# (label, resident, recipient, sources, categories, purpose, status, one_time, days valid, notice)
DEMO_CONSENTS = [
    (
        "alex-osap-income",
        "demo-resident-alex",
        "MCURES",
        ["FIN"],
        ["income"],
        "eligibility",
        ConsentStatus.ACTIVE,
        False,
        365,
        "The Ontario Student Assistance Program asks to receive your income from the "
        "Ministry of Finance each year to assess your eligibility, instead of asking you "
        "for your notice of assessment.",
    ),
    (
        "alex-mto-address",
        "demo-resident-alex",
        "MTO",
        ["MPBSDP"],
        ["address"],
        "licence-renewal",
        ConsentStatus.ACTIVE,
        True,
        90,
        "The Ministry of Transportation asks to receive your current address from "
        "ServiceOntario once, to renew your driver's licence.",
    ),
    (
        "alex-mlitsd-employment",
        "demo-resident-alex",
        "MLITSD",
        ["FIN"],
        ["income", "employment"],
        "eligibility",
        ConsentStatus.WITHDRAWN,
        False,
        365,
        "Employment Ontario asks to receive your income and employment history from the "
        "Ministry of Finance to check your eligibility for training support.",
    ),
    (
        "sam-ow-income",
        "demo-resident-sam",
        "MCCSS",
        ["FIN"],
        ["income"],
        "eligibility",
        ConsentStatus.ACTIVE,
        False,
        365,
        "Ontario Works asks to receive your income from the Ministry of Finance to "
        "calculate your assistance.",
    ),
]


async def seed_reference() -> dict[str, int]:
    """Load ministries, systems, data categories, purposes and legal authorities.

    Existing rows are updated to the reference values; nothing is deleted.
    """
    async with in_transaction():
        for code, name_en, name_fr, systems in MINISTRIES:
            ministry, _ = await Ministry.update_or_create(
                code=code, defaults={"name_en": name_en, "name_fr": name_fr}
            )
            for sys_code, sys_en, sys_fr in systems:
                await System.update_or_create(
                    code=sys_code,
                    defaults={"ministry": ministry, "name_en": sys_en, "name_fr": sys_fr},
                )
        for code, term, en, fr in DATA_CATEGORIES:
            await DataCategory.update_or_create(
                code=code, defaults={"dpv_term": term, "label_en": en, "label_fr": fr}
            )
        for code, term, en, fr in PURPOSES:
            await Purpose.update_or_create(
                code=code, defaults={"dpv_term": term, "label_en": en, "label_fr": fr}
            )
        for code, act, section, en, fr, permits, consent_required in LEGAL_AUTHORITIES:
            await LegalAuthority.update_or_create(
                code=code,
                defaults={
                    "act": act,
                    "section": section,
                    "title_en": en,
                    "title_fr": fr,
                    "permits": permits,
                    "consent_required": consent_required,
                },
            )
    return {
        "ministries": await Ministry.all().count(),
        "systems": await System.all().count(),
        "data categories": await DataCategory.all().count(),
        "purposes": await Purpose.all().count(),
        "legal authorities": await LegalAuthority.all().count(),
    }


def demo_pseudonym(settings: Settings, subject: str) -> str:
    """The pseudonym of a demo resident, as sign-in would compute it."""
    return pseudonym(subject, pseudonym_key(settings), kind="sub")


async def seed_demo(
    settings: Settings, ledger: TransparencyLog, *, now: datetime | None = None
) -> dict[str, int]:
    """Load the demo residents' holdings, consents and ledger activity (idempotent)."""
    now = now or datetime.now(UTC)
    async with in_transaction():
        for subject, sys_code, category, authority, retention in DEMO_HOLDINGS:
            await Holding.get_or_create(
                pseudonym=demo_pseudonym(settings, subject),
                system=await System.get(code=sys_code),
                category_id=category,
                defaults={"authority_id": authority, "retention": retention},
            )
        for (
            label,
            subject,
            recipient,
            sources,
            categories,
            purpose,
            status,
            one_time,
            days,
            notice,
        ) in DEMO_CONSENTS:
            consent_id = uuid.uuid5(DEMO_NAMESPACE, label)
            if await Consent.exists(id=consent_id):
                continue
            start = now - timedelta(days=30)
            await Consent.create(
                id=consent_id,
                pseudonym=demo_pseudonym(settings, subject),
                recipient=await Ministry.get(code=recipient),
                sources=sources,
                categories=categories,
                purpose_id=purpose,
                status=status,
                one_time=one_time,
                valid_from=start,
                valid_until=start + timedelta(days=days),
                notice_text=notice,
                notice_hash=hashlib.sha256(notice.encode()).hexdigest(),
                decided_at=start,
                withdrawn_at=now - timedelta(days=3) if status == ConsentStatus.WITHDRAWN else None,
            )
    demo = [demo_pseudonym(settings, s) for s, _ in DEMO_RESIDENTS]
    if not await LedgerOpening.filter(pseudonym__in=demo).exists():
        await ledger.append_all(demo_activity(settings, now))
    return {
        "demo residents": len(DEMO_RESIDENTS),
        "holdings": await Holding.filter(pseudonym__in=demo).count(),
        "consents": await Consent.filter(pseudonym__in=demo).count(),
        "ledger entries": await LedgerOpening.filter(pseudonym__in=demo).count(),
    }


# (days ago, resident, type, actor, system, purpose, basis kind, basis ref or consent label,
#  categories, source, recipient, reasons, hidden until (days from now), hidden reason)
DEMO_ACTIVITY = [
    (
        30,
        "alex",
        "consent.given",
        "MCURES",
        "osap",
        "eligibility",
        "consent",
        "alex-osap-income",
        ("income",),
        "FIN",
        "MCURES",
        (),
        None,
        None,
    ),
    (
        30,
        "alex",
        "consent.given",
        "MTO",
        "driver-licensing",
        "licence-renewal",
        "consent",
        "alex-mto-address",
        ("address",),
        "MPBSDP",
        "MTO",
        (),
        None,
        None,
    ),
    (
        29,
        "alex",
        "consent.given",
        "MLITSD",
        "employment-ontario",
        "eligibility",
        "consent",
        "alex-mlitsd-employment",
        ("employment", "income"),
        "FIN",
        "MLITSD",
        (),
        None,
        None,
    ),
    (
        28,
        "alex",
        "access.permitted",
        "FIN",
        "tax-benefits",
        "eligibility",
        "consent",
        "alex-osap-income",
        ("income",),
        "FIN",
        "MCURES",
        (),
        None,
        None,
    ),
    (
        21,
        "alex",
        "access.permitted",
        "MPBSDP",
        "serviceontario",
        "licence-renewal",
        "consent",
        "alex-mto-address",
        ("address",),
        "MPBSDP",
        "MTO",
        (),
        None,
        None,
    ),
    (
        20,
        "alex",
        "access.permitted",
        "MOH",
        "ohip",
        "identity-verification",
        "authority",
        "HIA-10",
        ("health-number", "name"),
        "MOH",
        "MPBSDP",
        (),
        None,
        None,
    ),
    (
        14,
        "alex",
        "access.permitted",
        "MTO",
        "driver-licensing",
        "law-enforcement",
        "authority",
        "FIPPA-42-1-g",
        ("address", "driver-licence"),
        "MTO",
        "SOLGEN",
        (),
        -2,
        "active-investigation",
    ),
    (
        6,
        "alex",
        "access.permitted",
        "MTO",
        "driver-licensing",
        "law-enforcement",
        "authority",
        "HTA-205",
        ("driver-licence",),
        "MTO",
        "SOLGEN",
        (),
        60,
        "active-investigation",
    ),
    (
        3,
        "alex",
        "consent.withdrawn",
        "MLITSD",
        "employment-ontario",
        "eligibility",
        "consent",
        "alex-mlitsd-employment",
        ("employment", "income"),
        "FIN",
        "MLITSD",
        (),
        None,
        None,
    ),
    (
        2,
        "alex",
        "access.denied",
        "FIN",
        "tax-benefits",
        "eligibility",
        "consent",
        "alex-mlitsd-employment",
        ("employment", "income"),
        "FIN",
        "MLITSD",
        ("consent_withdrawn",),
        None,
        None,
    ),
    (
        30,
        "sam",
        "consent.given",
        "MCCSS",
        "ontario-works",
        "eligibility",
        "consent",
        "sam-ow-income",
        ("income",),
        "FIN",
        "MCCSS",
        (),
        None,
        None,
    ),
    (
        10,
        "sam",
        "access.permitted",
        "FIN",
        "tax-benefits",
        "eligibility",
        "consent",
        "sam-ow-income",
        ("income",),
        "FIN",
        "MCCSS",
        (),
        None,
        None,
    ),
]


def demo_activity(settings: Settings, now: datetime) -> list[tuple[Entry, Subject]]:
    """The demo residents' ledger entries, oldest first, each with a fresh opening."""
    out = []
    ordered = sorted(enumerate(DEMO_ACTIVITY), key=lambda item: (-item[1][0], item[0]))
    for n, row in ordered:
        days, who, kind, actor, system, purpose, basis_kind, ref, categories = row[:9]
        source, recipient, reasons, hidden_days, hidden_reason = row[9:]
        subject = Subject.new(demo_pseudonym(settings, f"demo-resident-{who}"))
        if basis_kind == "consent":
            ref = str(uuid.uuid5(DEMO_NAMESPACE, ref))
        hidden_until = None
        if hidden_days is not None:
            hidden_until = (now + timedelta(days=hidden_days)).date().isoformat()
        entry = Entry(
            type=kind,
            time=format_time(now - timedelta(days=days, hours=n)),
            actor_org=actor,
            actor_system=system,
            purpose=purpose,
            basis=Basis(basis_kind, ref),
            categories=categories,
            query_id=str(uuid.uuid5(DEMO_NAMESPACE, f"query-{n}")),
            subject_commitment=commitment(subject.opening, subject.pseudonym),
            source_orgs=(source,),
            recipient_org=recipient,
            reasons=reasons,
            hidden_until=hidden_until,
            hidden_reason=hidden_reason,
        )
        out.append((entry, subject))
    return out
