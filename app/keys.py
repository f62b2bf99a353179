"""The server's secrets, loaded from files under ``var/secrets`` (generated on first run)."""

from __future__ import annotations

from pathlib import Path

from app.keyfiles import KeyFileError, load_or_create, random_key
from app.settings import Settings
from ledger.errors import NoteError
from ledger.note import Signer, encode_signer_key, generate_signer, parse_signer_key


def pseudonym_key(settings: Settings) -> bytes:
    """The HMAC key that turns a person's identifier into their pseudonym.

    Losing it unlinks every stored pseudonym from the people they stand for; it is
    generated once (32 random bytes) and must be backed up with the database.
    """
    path = settings.pseudonym_key_file or Path(settings.secrets_dir) / "pseudonym.key"
    return load_or_create(path, random_key(32))


def ledger_signer(settings: Settings) -> Signer:
    """The Ed25519 key that signs the ledger's checkpoints, named after the log's origin.

    Stored as a note private key (``PRIVATE+KEY+name+id+key``) in
    ``var/secrets/ledger-signer.key``; generated on first use.
    """
    path = Path(settings.secrets_dir) / "ledger-signer.key"

    def generate() -> bytes:
        return (encode_signer_key(generate_signer(settings.log_origin)) + "\n").encode()

    try:
        signer = parse_signer_key(load_or_create(path, generate).decode())
    except (NoteError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path} is not a note signer key: {exc}") from None
    if signer.name != settings.log_origin:
        raise KeyFileError(
            f"{path} signs for {signer.name!r} but ONCEONLY_LOG_ORIGIN is "
            f"{settings.log_origin!r}; a log's origin never changes"
        )
    return signer
