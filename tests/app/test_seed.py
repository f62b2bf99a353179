from app.seed import DEMO_RESIDENTS, demo_pseudonym, seed_demo, seed_reference
from app.settings import Settings
from consent.models import Consent, ConsentStatus, Holding, LegalAuthority, Ministry, System


async def counts() -> tuple[int, ...]:
    return (
        await Ministry.all().count(),
        await System.all().count(),
        await LegalAuthority.all().count(),
        await Holding.all().count(),
        await Consent.all().count(),
    )


async def test_seed_is_idempotent(db: Settings) -> None:
    await seed_reference()
    await seed_demo(db)
    first = await counts()
    await seed_reference()
    await seed_demo(db)
    assert await counts() == first
    assert first[0] >= 10


async def test_demo_residents_are_stored_only_as_pseudonyms(db: Settings) -> None:
    await seed_reference()
    await seed_demo(db)
    for subject, _name in DEMO_RESIDENTS:
        assert not await Holding.filter(pseudonym=subject).exists()
        assert await Holding.filter(pseudonym=demo_pseudonym(db, subject)).exists()
    alex = demo_pseudonym(db, "demo-resident-alex")
    statuses = {c.status for c in await Consent.filter(pseudonym=alex)}
    assert {ConsentStatus.ACTIVE, ConsentStatus.WITHDRAWN} <= statuses


async def test_reference_data_has_real_ministries_and_services(db: Settings) -> None:
    await seed_reference()
    assert (await Ministry.get(code="MTO")).name_en == "Ministry of Transportation"
    assert (await System.get(code="ohip").prefetch_related("ministry")).ministry.code == "MOH"
    assert (await System.get(code="serviceontario")).name_fr == "ServiceOntario"
    fippa = await LegalAuthority.get(code="FIPPA-42-1-c")
    assert fippa.section == "s. 42(1)(c)"
