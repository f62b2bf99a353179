"""What a running Onceonly holds open: the ORM's database and the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from app.db import DatabaseError, close_database, open_database
from app.keys import ReceiptKey, ledger_signer, pseudonym_key, receipt_key
from app.settings import Settings
from consent.identity import Pseudonymizer
from ledger.database import LedgerUnavailable
from ledger.log import TransparencyLog


@dataclass
class Services:
    settings: Settings
    ledger: TransparencyLog
    people: Pseudonymizer
    receipt_key: ReceiptKey

    async def close(self) -> None:
        """Finish pending ledger appends, then close every connection."""
        try:
            await self.ledger.close()
        finally:
            await close_database()


async def open_services(settings: Settings) -> Services:
    """Open the database for the ORM and the ledger (whose sequencer starts).

    Raises DatabaseError with a one-line reason when the database cannot be used.
    """
    await open_database(settings)
    try:
        ledger = await TransparencyLog.open(
            settings.database_url, ledger_signer(settings), settings.log_origin
        )
    except LedgerUnavailable as exc:
        await close_database()
        raise DatabaseError(str(exc)) from exc
    except BaseException:
        await close_database()
        raise
    return Services(settings, ledger, Pseudonymizer(pseudonym_key(settings)), receipt_key(settings))
