from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ledger.log import TransparencyLog
from ledger.note import Signer, generate_signer
from tests.conftest import Database

ORIGIN = "onceonly.test/ledger"


@pytest.fixture
def signer() -> Signer:
    return generate_signer(ORIGIN)


@pytest.fixture
async def ledger_log(database: Database, signer: Signer) -> AsyncIterator[TransparencyLog]:
    log = await TransparencyLog.open(database.url, signer, ORIGIN)
    try:
        yield log
    finally:
        await log.close()
