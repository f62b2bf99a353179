"""``onceonly keys``: list and rotate the signing keys, and retire old ones.

    onceonly keys list
    onceonly keys rotate checkpoint|token|receipt [--retain DURATION]
    onceonly keys retire checkpoint|token|receipt KEY_ID

Every key file stays under ``var/secrets`` (0600, see app.keys for the layout); a
rotation writes ``keys.json`` first and replaces the current key file last, under a
lock, so a process reading the keys meanwhile always has a usable set.

- ``token`` and ``receipt``: the new key signs at once (every worker re-reads the key
  files at its next request; webhook notices, signed with the receipt key, switch at
  the next start); the old public key stays in the published key set
  (``/oauth/jwks``, ``/api/v1/jwks``) for ``--retain`` (tokens: 1 day by default,
  receipts: for ever), or until ``keys retire`` removes it.
- ``checkpoint``: the new key signs from the server's next start, and the previous key
  co-signs every checkpoint beside it until ``keys retire checkpoint OLD_ID`` ends the
  transition (effective at the next start again). A checkpoint key is never removed
  from the log's key set: the checkpoints it signed must keep verifying.

Errors end with one ``onceonly: error: ...`` line and exit 1 (printed here, not raised
as app.cli.CommandError, for the reason given in app.ledger_cli).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec

from app import keys
from app.cli_errors import Handler, guarded
from app.keyfiles import KeyFileError, locked, remove_secret, replace_secret
from app.keys import CHECKPOINT, KINDS, RECEIPT, TOKEN, KeyRecord
from app.oauth import keys as oauth_keys
from ledger.note import encode_signer_key, generate_signer

if TYPE_CHECKING:
    from app.settings import Settings


#: How long a retired key keeps verifying when ``--retain`` is not given (None: always).
DEFAULT_RETAIN: dict[str, timedelta | None] = {TOKEN: timedelta(days=1), RECEIPT: None}

#: ``--retain`` not given (its own default differs per kind; None means for ever).
_UNSET: Any = object()

_DURATION = re.compile(r"(\d{1,6})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class _Stop(Exception):
    """A keys command cannot go on; the message is the one line to print."""


def add_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Register ``keys`` and its subcommands on the ``onceonly`` command's subparsers."""
    parser = commands.add_parser(
        "keys", help="list, rotate and retire the checkpoint, token and receipt keys"
    )
    actions = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", help="every signing key: kind, id, status and dates (never private keys)"
    )
    listing.set_defaults(handler=_guarded(_list))

    rotate = actions.add_parser(
        "rotate",
        help="make a new signing key current; the old one keeps verifying what it signed",
    )
    rotate.add_argument("kind", choices=KINDS, help="which key")
    rotate.add_argument(
        "--retain",
        type=_duration,
        default=_UNSET,
        metavar="DURATION",
        help="how long what the old key signed keeps verifying: 30m, 12h, 7d or 'forever' "
        "(token and receipt keys; default 1d for tokens, forever for receipts)",
    )
    rotate.set_defaults(handler=_guarded(_rotate))

    retire = actions.add_parser(
        "retire",
        help="stop trusting a retired token or receipt key, or end a checkpoint key's "
        "co-signing transition",
    )
    retire.add_argument("kind", choices=KINDS, help="which key")
    retire.add_argument("key_id", metavar="KEY_ID", help="the key's id (see `onceonly keys list`)")
    retire.set_defaults(handler=_guarded(_retire))


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, lambda: (_Stop, KeyFileError))


def _duration(text: str) -> timedelta | None:
    """``--retain``: ``<n>s|m|h|d``, or ``forever`` (None)."""
    if text == "forever":
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not like 30m, 12h, 7d or 'forever'")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


# --- list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyStatus:
    """One line of ``keys list``: public facts about a key, never its private half."""

    kind: str
    id: str
    status: str  # current, cosigning, retired or removed
    created: datetime
    retired: datetime | None
    until: datetime | None


def key_statuses(settings: Settings, now: datetime) -> list[KeyStatus]:
    """Every key of every kind: the current one, then the older ones, newest first.

    A kind whose key was never generated has no line. Raises KeyFileError when a key
    file or ``keys.json`` is unusable.
    """
    history = keys.key_history(settings)
    statuses: list[KeyStatus] = []
    for kind in KINDS:
        records = {r.id: r for r in history if r.kind == kind}
        signing = _signing_ids(settings, kind)
        for key_id, status, path in signing:
            record = records.pop(key_id, None)
            created = record.created if record else keys.file_created(path)
            retired = record.retired if record and status != "current" else None
            statuses.append(KeyStatus(kind, key_id, status, created, retired, None))
        for record in sorted(records.values(), key=lambda r: r.created, reverse=True):
            status = "retired" if record.verifies(now) else "removed"
            statuses.append(
                KeyStatus(kind, record.id, status, record.created, record.retired, record.until)
            )
    return statuses


def _signing_ids(settings: Settings, kind: str) -> list[tuple[str, str, Path]]:
    """(id, status, file) of the keys of ``kind`` that sign: current, then co-signing."""
    secrets = Path(settings.secrets_dir)
    if kind == CHECKPOINT:
        path = secrets / keys.LEDGER_KEY_FILE
        if not path.exists():
            return []
        current = keys.ledger_signer(settings, create=False)
        found = [(f"{current.key_id:08x}", "current", path)]
        previous = keys.previous_ledger_signer(settings)
        if previous is not None and previous.key_id != current.key_id:
            previous_path = secrets / keys.LEDGER_PREVIOUS_KEY_FILE
            found.append((f"{previous.key_id:08x}", "cosigning", previous_path))
        return found
    path = secrets / _ES256_FILES[kind]
    if not path.exists():
        return []
    return [(_current_es256(settings, kind)[0], "current", path)]


def _list(settings: Settings, args: argparse.Namespace) -> int:
    rows = [("KIND", "KEY ID", "STATUS", "CREATED", "RETIRED", "VERIFIES UNTIL")]
    for key in key_statuses(settings, datetime.now(UTC)):
        retired = keys.format_time(key.retired) if key.retired else "-"
        if key.status in ("current", "cosigning"):
            until = "-"
        else:
            until = keys.format_time(key.until) if key.until else "forever"
        rows.append((key.kind, key.id, key.status, keys.format_time(key.created), retired, until))
    if len(rows) == 1:
        print("no signing key yet: they are generated when the server first starts")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


# --- rotate --------------------------------------------------------------------------

_ES256_FILES = {TOKEN: oauth_keys.TOKEN_KEY_FILE, RECEIPT: keys.RECEIPT_KEY_FILE}


def _current_es256(settings: Settings, kind: str) -> tuple[str, ec.EllipticCurvePublicKey]:
    """The id and public key of the current token or receipt key (generated if absent)."""
    if kind == TOKEN:
        signing = oauth_keys.token_signing_key(settings)
        return signing.kid, signing.private_key.public_key()
    receipt = keys.receipt_key(settings)
    return receipt.kid, receipt.private_key.public_key()


def _es256_id(kind: str, public_key: ec.EllipticCurvePublicKey) -> str:
    return oauth_keys.key_id(public_key) if kind == TOKEN else keys.receipt_key_id(public_key)


def _rotate(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    if args.kind == CHECKPOINT:
        if args.retain is not _UNSET:
            raise _Stop(
                "--retain does not apply to checkpoint keys: the checkpoints a key signed "
                "verify with it for ever"
            )
        with locked(Path(settings.secrets_dir)):
            old, new = rotate_checkpoint_key(settings, now)
        _explain_checkpoint_rotation(old, new)
        return 0
    retain = DEFAULT_RETAIN[args.kind] if args.retain is _UNSET else args.retain
    with locked(Path(settings.secrets_dir)):
        old_record, new_id = rotate_es256_key(settings, args.kind, now, retain)
    until = (
        f"until {keys.format_time(old_record.until)}"
        if old_record.until
        else "for as long as it is kept"
    )
    if args.kind == TOKEN:
        print(
            f"token key {new_id} is current: every worker signs new access tokens with it "
            "from its next request (no restart needed)."
        )
        print(
            f"Tokens signed with {old_record.id} keep verifying ({oauth_keys.TOKEN_SIGNING_ALG}, "
            f"listed at /oauth/jwks) {until}; `onceonly keys retire token {old_record.id}` "
            "ends that sooner."
        )
    else:
        print(
            f"receipt key {new_id} is current: new consent receipts are signed with it from "
            "the next request (webhook notices from the next start)."
        )
        print(
            f"Receipts signed with {old_record.id} keep verifying (listed at /api/v1/jwks) {until}."
        )
    return 0


def rotate_es256_key(
    settings: Settings, kind: str, now: datetime, retain: timedelta | None
) -> tuple[KeyRecord, str]:
    """Make a new ES256 key current for ``kind`` (token or receipt); call under the lock.

    ``keys.json`` records the old key as retired at ``now``, verifying for ``retain``
    (None: for ever), and the new key; then the new key replaces the current key file.
    Returns the old key's record and the new key's id.
    """
    path = Path(settings.secrets_dir) / _ES256_FILES[kind]
    old_id, old_public = _current_es256(settings, kind)
    private = ec.generate_private_key(ec.SECP256R1())
    new_public = private.public_key()
    new_id = _es256_id(kind, new_public)
    history = list(keys.key_history(settings))
    old = _record(history, kind, old_id) or KeyRecord(
        kind, old_id, keys.public_pem(old_public), keys.file_created(path)
    )
    old = dataclasses.replace(old, retired=now, until=None if retain is None else now + retain)
    new = KeyRecord(kind, new_id, keys.public_pem(new_public), now)
    replace_secret(keys.history_path(settings), keys.encode_history(_upsert(history, old, new)))
    replace_secret(path, keys.private_pem(private))
    return old, new_id


def rotate_checkpoint_key(settings: Settings, now: datetime) -> tuple[KeyRecord, KeyRecord]:
    """Make a new checkpoint key current; the old one co-signs until it is retired.

    Call under the lock. Refuses (_Stop) while a previous key still co-signs. Writes the
    old key to ``ledger-signer.previous.key``, records both keys in ``keys.json``, then
    replaces ``ledger-signer.key``. Returns the old and the new key's records.
    """
    secrets = Path(settings.secrets_dir)
    current = keys.ledger_signer(settings)
    previous = keys.previous_ledger_signer(settings)
    if previous is not None and previous.key_id != current.key_id:
        raise _Stop(
            f"checkpoint key {previous.key_id:08x} still co-signs after the last rotation; "
            f"end that transition first with `onceonly keys retire checkpoint "
            f"{previous.key_id:08x}`"
        )
    signer = generate_signer(settings.log_origin)
    history = list(keys.key_history(settings))
    old_id = f"{current.key_id:08x}"
    old = _record(history, CHECKPOINT, old_id) or KeyRecord(
        CHECKPOINT,
        old_id,
        current.verifier().vkey,
        keys.file_created(secrets / keys.LEDGER_KEY_FILE),
    )
    old = dataclasses.replace(old, retired=now, until=None)
    new = KeyRecord(CHECKPOINT, f"{signer.key_id:08x}", signer.verifier().vkey, now)
    replace_secret(
        secrets / keys.LEDGER_PREVIOUS_KEY_FILE, (encode_signer_key(current) + "\n").encode()
    )
    replace_secret(keys.history_path(settings), keys.encode_history(_upsert(history, old, new)))
    replace_secret(secrets / keys.LEDGER_KEY_FILE, (encode_signer_key(signer) + "\n").encode())
    return old, new


def _explain_checkpoint_rotation(old: KeyRecord, new: KeyRecord) -> None:
    print(
        f"checkpoint key {new.id} signs checkpoints from the server's next start; the "
        f"previous key {old.id} co-signs every checkpoint beside it until "
        f"`onceonly keys retire checkpoint {old.id}`."
    )
    print(f"The new verifier key:\n{new.public}")
    print(
        "Next: 1. restart the server's workers (one by one is fine); 2. give the new "
        "verifier key to every witness (`onceonly witness add-log --state DIR --vkey "
        f"'{new.public}' --replace`) and to auditors (/ledger/vkeys lists every key); "
        f"3. then `onceonly keys retire checkpoint {old.id}` and restart again."
    )


def _record(history: Sequence[KeyRecord], kind: str, key_id: str) -> KeyRecord | None:
    return next((r for r in history if r.kind == kind and r.id == key_id), None)


def _upsert(history: Sequence[KeyRecord], *records: KeyRecord) -> list[KeyRecord]:
    """``history`` with each of ``records`` replacing the record of its kind and id, or
    appended."""
    result = list(history)
    for record in records:
        for position, known in enumerate(result):
            if (known.kind, known.id) == (record.kind, record.id):
                result[position] = record
                break
        else:
            result.append(record)
    return result


# --- retire --------------------------------------------------------------------------


def _retire(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    with locked(Path(settings.secrets_dir)):
        message = retire_key(settings, args.kind, args.key_id.strip(), now)
    print(message)
    return 0


def retire_key(settings: Settings, kind: str, key_id: str, now: datetime) -> str:
    """Retire ``key_id`` of ``kind`` at ``now``; call under the lock. Returns what was done.

    A token or receipt key leaves the published key set (what it signed no longer
    verifies); a co-signing checkpoint key stops co-signing (its private key is
    deleted). Raises _Stop for the current key, an unknown key, or a retired checkpoint
    key (those stay in the log's key set for good).
    """
    current = [found for found in _signing_ids(settings, kind) if found[1] == "current"]
    if current and current[0][0] == key_id:
        raise _Stop(f"{kind} key {key_id} is the current key; rotate it first")
    if kind == CHECKPOINT:
        previous = keys.previous_ledger_signer(settings)
        if previous is not None and f"{previous.key_id:08x}" == key_id:
            remove_secret(Path(settings.secrets_dir) / keys.LEDGER_PREVIOUS_KEY_FILE)
            return (
                f"checkpoint key {key_id} no longer co-signs from the server's next start "
                "(restart the workers); it stays in the log's key set so that the "
                "checkpoints it signed keep verifying."
            )
        if _record(keys.key_history(settings), CHECKPOINT, key_id) is not None:
            raise _Stop(
                f"checkpoint key {key_id} is retired already; checkpoint keys are never "
                "removed, the checkpoints they signed must keep verifying"
            )
        raise _Stop(f"there is no checkpoint key {key_id}; see `onceonly keys list`")
    history = list(keys.key_history(settings))
    record = _record(history, kind, key_id)
    if record is None:
        raise _Stop(f"there is no retired {kind} key {key_id}; see `onceonly keys list`")
    if record.verifies(now):
        record = dataclasses.replace(record, retired=record.retired or now, until=now)
        replace_secret(keys.history_path(settings), keys.encode_history(_upsert(history, record)))
    where = "/oauth/jwks" if kind == TOKEN else "/api/v1/jwks"
    signed = "access tokens" if kind == TOKEN else "receipts"
    return (
        f"{kind} key {key_id} is removed from {where}: {signed} signed with it no longer "
        "verify (every worker follows at its next request)."
    )
