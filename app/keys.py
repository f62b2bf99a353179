"""The server's secrets, loaded from files under ``var/secrets`` (generated on first run)."""

from __future__ import annotations

from pathlib import Path

from app.keyfiles import load_or_create, random_key
from app.settings import Settings


def pseudonym_key(settings: Settings) -> bytes:
    """The HMAC key that turns a person's identifier into their pseudonym.

    Losing it unlinks every stored pseudonym from the people they stand for; it is
    generated once (32 random bytes) and must be backed up with the database.
    """
    path = settings.pseudonym_key_file or Path(settings.secrets_dir) / "pseudonym.key"
    return load_or_create(path, random_key(32))
