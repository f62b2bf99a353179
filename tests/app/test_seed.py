from app.seed import DEMO_RESIDENTS, demo_pseudonym, seed_demo, seed_reference
from app.services import Services
from consent.models import Consent, ConsentStatus, Holding, LegalAuthority, Ministry, System


async def counts() -> tuple[int, ...]:
    return (
        await Ministry.all().count(),
        await System.all().count(),
        await LegalAuthority.all().count(),
        await Holding.all().count(),
        await Consent.all().count(),
    )


async def test_seed_is_idempotent(services: Services) -> None:
    await seed_reference()
    await seed_demo(services.settings, services.ledger)
    first = await counts()
    size = await services.ledger.size()
    await seed_reference()
    await seed_demo(services.settings, services.ledger)
    assert await counts() == first
    assert await services.ledger.size() == size > 0
    assert first[0] >= 10


async def test_demo_residents_are_stored_only_as_pseudonyms(services: Services) -> None:
    db = services.settings
    await seed_reference()
    await seed_demo(db, services.ledger)
    for subject, _name in DEMO_RESIDENTS:
        assert not await Holding.filter(pseudonym=subject).exists()
        assert await Holding.filter(pseudonym=demo_pseudonym(db, subject)).exists()
    alex = demo_pseudonym(db, "demo-resident-alex")
    statuses = {c.status for c in await Consent.filter(pseudonym=alex)}
    assert {ConsentStatus.ACTIVE, ConsentStatus.WITHDRAWN} <= statuses


async def test_reference_data_has_real_ministries_and_services(services: Services) -> None:
    await seed_reference()
    assert (await Ministry.get(code="MTO")).name_en == "Ministry of Transportation"
    assert (await System.get(code="ohip").prefetch_related("ministry")).ministry.code == "MOH"
    assert (await System.get(code="serviceontario")).name_fr == "ServiceOntario"
    fippa = await LegalAuthority.get(code="FIPPA-42-1-c")
    assert fippa.section == "s. 42(1)(c)"


async def test_demo_activity_is_in_the_ledger_and_opens_to_the_resident(
    services: Services,
) -> None:
    from ledger.entry import decode_entry, verify_commitment
    from ledger.models import LedgerOpening

    await seed_reference()
    await seed_demo(services.settings, services.ledger)
    alex = demo_pseudonym(services.settings, "demo-resident-alex")
    openings = await LedgerOpening.filter(pseudonym=alex).order_by("idx")
    assert len(openings) >= 8
    kinds = set()
    for opening in openings:
        leaf, _ = await services.ledger.entry(opening.idx)
        entry = decode_entry(leaf)
        assert verify_commitment(entry.subject_commitment, bytes(opening.opening), alex)
        kinds.add(entry.type)
    assert {"consent.given", "access.permitted", "access.denied", "consent.withdrawn"} <= kinds
