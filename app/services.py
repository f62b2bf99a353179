"""What a running Onceonly holds open: the ORM's database and the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from app.db import DatabaseError, close_database, open_database
from app.keyfiles import Reloaded
from app.keys import ReceiptKey, ReceiptKeySet, ledger_keys, pseudonym_key, receipt_keys
from app.settings import Settings
from consent.identity import Pseudonymizer
from ledger.database import LedgerUnavailable
from ledger.log import TransparencyLog


@dataclass
class Services:
    settings: Settings
    ledger: TransparencyLog
    people: Pseudonymizer
    receipt_keys: Reloaded[ReceiptKeySet]

    @property
    def receipt_key(self) -> ReceiptKey:
        """The key that signs new receipts (followed across ``onceonly keys rotate``)."""
        return self.receipt_keys.get().current

    def receipt_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set of every receipt key whose receipts verify, the current one first."""
        return self.receipt_keys.get().jwks()

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
    people = Pseudonymizer(pseudonym_key(settings))
    receipts = receipt_keys(settings)
    receipts.get()  # an unusable receipt key stops the start, not the first receipt
    await open_database(settings)
    try:
        # Checkpoint keys are read once: a rotation takes effect at the next start.
        keys = ledger_keys(settings)
        ledger = await TransparencyLog.open(
            settings.database_url,
            keys.signer,
            settings.log_origin,
            cosigners=keys.cosigners,
            retired=keys.retired,
        )
    except LedgerUnavailable as exc:
        await close_database()
        raise DatabaseError(str(exc)) from exc
    except BaseException:
        await close_database()
        raise
    return Services(settings, ledger, people, receipts)
