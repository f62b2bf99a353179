"""``onceonly ledger``: verify the ledger, export it as a bundle, print its verifier key.

    onceonly ledger verify [--json] [--deep] [--vkey VKEY]   the configured database
    onceonly ledger verify --bundle DIR [--vkey VKEY] [--json] [--deep]   offline
    onceonly ledger export DIR
    onceonly ledger vkey

``verify`` exits 0 when everything matches and 1 when it found a failure (which the
result names). A problem that stops a command (unreachable database, non-empty export
directory, bad key) ends with one ``onceonly: error: ...`` line and exit 1, as every
``onceonly`` command does. These handlers print that line themselves rather than raise
``app.cli.CommandError``: under ``python -m app.cli`` the running module is
``__main__``, and an ``app.cli`` imported from here would be a second module whose
CommandError ``main`` does not catch.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from app.settings import Settings
    from ledger.database import LedgerDatabase
    from ledger.verify import Progress, VerifyReport

EXIT_OK = 0
EXIT_FAILURE = 1

Handler = Callable[["Settings", argparse.Namespace], int]


class _Stop(Exception):
    """A ledger command cannot go on; the message is the one line to print."""


def add_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Register ``ledger`` and its subcommands on the ``onceonly`` command's subparsers."""
    ledger = commands.add_parser("ledger", help="verify, export and inspect the ledger")
    actions = ledger.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)

    verify = actions.add_parser(
        "verify",
        help="check every entry, checkpoint and tile of the ledger",
        description="Verify the ledger in the configured database, or an exported bundle "
        "with --bundle (no database needed). Exit status 0: it verifies; 1: it does not "
        "(the output names the first failure) or the check could not run.",
    )
    verify.add_argument("--bundle", type=Path, metavar="DIR", help="verify a bundle directory")
    verify.add_argument(
        "--vkey",
        help="the log's verifier key, obtained independently (default: the bundle's own "
        "key with --bundle, else the key of this installation)",
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.add_argument("--deep", action="store_true", help="also decode every entry (slower)")
    verify.set_defaults(handler=_guarded(_verify))

    export = actions.add_parser(
        "export", help="write the ledger as a bundle an auditor can verify offline"
    )
    export.add_argument("directory", type=Path, metavar="DIR", help="a new or empty directory")
    export.set_defaults(handler=_guarded(_export))

    vkey = actions.add_parser("vkey", help="print the ledger's verifier key")
    vkey.set_defaults(handler=_guarded(_vkey))

    receipt = actions.add_parser(
        "verify-receipt",
        help="check a personal receipt downloaded from the portal (offline)",
        description="Check that a receipt's entry is in the ledger's signed checkpoint and "
        "that it is about the person the receipt names. No database or network is used.",
    )
    receipt.add_argument("file", type=Path, metavar="FILE", help="the downloaded receipt")
    receipt.add_argument("--vkey", help="the ledger's verifier key, obtained independently")
    receipt.set_defaults(handler=_verify_receipt)


def _guarded(handler: Handler) -> Handler:
    """Run a handler; turn the errors a person can act on into one line and exit 1."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        import asyncpg

        from app.keyfiles import KeyFileError
        from ledger.errors import LedgerError

        try:
            return handler(settings, args)
        except (_Stop, LedgerError, KeyFileError) as exc:
            message = str(exc)
        except (sqlite3.Error, asyncpg.PostgresError) as exc:
            message = f"cannot read the ledger: {exc}"
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            message = f"cannot use{where}: {exc.strerror or exc}"
        print(f"onceonly: error: {message}", file=sys.stderr)
        return EXIT_FAILURE

    return run


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from ledger.bundle import verify_bundle
    from ledger.verify import verify_database

    progress = _progress_bar("verifying", sys.stderr)
    if args.bundle is not None:
        if not args.bundle.is_dir():
            raise _Stop(f"{args.bundle} is not a bundle directory")
        if args.vkey is not None:
            _verifier(settings, args.vkey)  # a malformed key is a usage error, not a result
        report = verify_bundle(args.bundle, vkey=args.vkey, progress=progress, deep=args.deep)
    else:

        async def check(db: LedgerDatabase) -> VerifyReport:
            verifier = _verifier(settings, args.vkey)  # once the database is known to exist
            return await verify_database(
                db, verifier, settings.log_origin, progress=progress, deep=args.deep
            )

        report = _with_ledger(settings, check)
    _end_progress(progress, sys.stderr)
    print(report.to_json() if args.json else report.summary())
    return EXIT_OK if report.ok else EXIT_FAILURE


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from app.keys import ledger_signer
    from ledger.bundle import check_export_directory, export_bundle

    check_export_directory(args.directory)  # before anything is opened or generated
    vkey = ledger_signer(settings, create=False).verifier().vkey
    progress = _progress_bar("exporting", sys.stderr)

    async def export(db: LedgerDatabase) -> Any:
        return await export_bundle(db, vkey, settings.log_origin, args.directory, progress=progress)

    manifest = _with_ledger(settings, export)
    _end_progress(progress, sys.stderr)
    print(
        f"exported {manifest.size:,} entries and {manifest.counts['checkpoints']:,} "
        f"checkpoints (tree size {manifest.size:,}, root {manifest.root}) to "
        f"{args.directory}; check it with `onceonly ledger verify --bundle "
        f"{args.directory} --vkey '{vkey}'`"
    )
    return EXIT_OK


def _vkey(settings: Settings, args: argparse.Namespace) -> int:
    from app.keys import ledger_signer

    print(ledger_signer(settings, create=False).verifier().vkey)
    return EXIT_OK


def _verifier(settings: Settings, vkey: str | None) -> Any:
    from app.keys import ledger_signer
    from ledger.errors import NoteError
    from ledger.note import parse_vkey

    if vkey is None:
        return ledger_signer(settings, create=False).verifier()
    try:
        return parse_vkey(vkey.strip())
    except NoteError as exc:
        raise _Stop(f"--vkey is not a verifier key: {exc}") from None


def _with_ledger(
    settings: Settings, work: Callable[[LedgerDatabase], Coroutine[Any, Any, Any]]
) -> Any:
    """Connect to the ledger's database, run ``work`` with it, close it."""
    from app.db import sqlite_path
    from ledger.database import open_ledger_database

    path = sqlite_path(settings.database_url)
    if path is not None and path != ":memory:" and not Path(path).is_file():
        # Opening would create an empty file; say what is wrong instead.
        raise _Stop(f"there is no database at {path}; run `onceonly migrate` first")

    async def go() -> Any:
        db = open_ledger_database(settings.database_url)
        await db.connect()
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(go())


def _progress_bar(action: str, stream: TextIO) -> Progress | None:
    """A one-line progress display on ``stream``, or None when it is not a terminal."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        stream.write(f"\r{action}: {percent:3d}% ({done:,} of {total:,} entries)")
        stream.flush()

    return show


def _end_progress(progress: Progress | None, stream: TextIO) -> None:
    if progress is not None:
        stream.write("\r\033[K")
        stream.flush()


def _verify_receipt(settings: Settings, args: argparse.Namespace) -> int:
    from ledger.errors import LedgerError
    from ledger.receipts import check_personal_receipt

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"onceonly: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        checked = check_personal_receipt(data, args.vkey)
    except LedgerError as exc:
        print(f"onceonly: error: the receipt does not verify: {exc}", file=sys.stderr)
        return 1
    entry = checked.entry
    print(
        f"The receipt verifies: entry {checked.index} ({entry.type}, {entry.time}, by "
        f"{entry.actor_org}) is in the ledger {checked.checkpoint.origin} of size "
        f"{checked.checkpoint.size}, and it is about pseudonym {checked.pseudonym}."
    )
    if not checked.key_was_given:
        print("Note: checked with the key the receipt names; give --vkey to use a key you trust.")
    return 0
