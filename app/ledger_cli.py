"""``onceonly ledger``: verify the ledger, export it as a bundle, print its verifier key.

    onceonly ledger verify [--json] [--deep] [--vkey VKEY]   the configured database
    onceonly ledger verify --bundle DIR|FILE [--vkey VKEY] [--witness VKEY]... [--json]
    onceonly ledger export DIR                  the whole log
    onceonly ledger export [--from DATE] [--to DATE] [--ministry CODE] [--system CODE]
                           [--person ID] [--format bundle|csv|jsonl] DIR|FILE   a slice
    onceonly ledger vkey

``verify`` exits 0 when everything matches and 1 when it found a failure (which the
result names). A problem that stops a command (unreachable database, non-empty export
directory, bad key) ends with one ``onceonly: error: ...`` line and exit 1, as every
``onceonly`` command does (``app.cli_errors.guarded`` says why these commands do not
raise ``app.cli.CommandError``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from app.cli_errors import Handler, guarded

if TYPE_CHECKING:
    from app.settings import Settings
    from ledger.database import LedgerDatabase
    from ledger.verify import Progress, VerifyReport

EXIT_OK = 0
EXIT_FAILURE = 1


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
    verify.add_argument(
        "--bundle",
        type=Path,
        metavar="DIR|FILE",
        help="verify an exported bundle (whole log or slice): a directory, .tar or .tar.gz",
    )
    verify.add_argument(
        "--vkey",
        help="the log's verifier key, obtained independently; after a key rotation its "
        "keys, separated by spaces (default: the bundle's own keys with --bundle, else "
        "the keys of this installation)",
    )
    verify.add_argument(
        "--witness",
        action="append",
        metavar="VKEY",
        help="a witness's cosignature key, obtained independently (repeat for each; "
        "default: the keys in a slice bundle)",
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.add_argument("--deep", action="store_true", help="also decode every entry (slower)")
    verify.set_defaults(handler=_guarded(_verify))

    export = actions.add_parser(
        "export",
        help="write the ledger, or a slice of it, as files an auditor can verify offline",
        description="Without slice options: the whole log as a bundle directory. With "
        "--from, --to, --ministry, --system or --person: the entries of that slice, each "
        "with its inclusion proof in the newest published checkpoint (a directory), or "
        "the slice as CSV or JSON Lines (a file, or standard output without one).",
    )
    export.add_argument(
        "target",
        type=Path,
        nargs="?",
        metavar="DIR|FILE",
        help="a new or empty directory (bundle), or a file (csv, jsonl; default stdout)",
    )
    export.add_argument("--from", dest="since", metavar="DATE", help="first day (YYYY-MM-DD, UTC)")
    export.add_argument("--to", dest="until", metavar="DATE", help="last day (YYYY-MM-DD, UTC)")
    export.add_argument("--ministry", metavar="CODE", help="the ministry that acted")
    export.add_argument("--system", metavar="CODE", help="the system that acted")
    export.add_argument(
        "--person",
        metavar="ID",
        help="a person's identifier (pseudonymised with this installation's key; the "
        "bundle then carries the openings that tie each entry to that pseudonym)",
    )
    export.add_argument(
        "--format",
        choices=("bundle", "csv", "jsonl"),
        default="bundle",
        help="bundle (default), csv or jsonl",
    )
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


def _user_errors() -> tuple[type[BaseException], ...]:
    from app.keyfiles import KeyFileError
    from ledger.errors import LedgerError

    return (_Stop, LedgerError, KeyFileError)


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, _user_errors, database="cannot read the ledger")


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from ledger.evidence import verify_any
    from ledger.verify import verify_database

    progress = _progress_bar("verifying", sys.stderr)
    report: Any
    if args.bundle is not None:
        if not args.bundle.exists():
            raise _Stop(f"{args.bundle} is not a bundle directory or archive")
        if args.vkey is not None:
            _verifier(settings, args.vkey)  # a malformed key is a usage error, not a result
        report = verify_any(
            args.bundle,
            vkey=args.vkey,
            witnesses=args.witness,
            progress=progress,
            deep=args.deep,
        )
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
    from app.keys import ledger_verifiers
    from ledger.bundle import check_export_directory, export_bundle

    criteria = (args.since, args.until, args.ministry, args.system, args.person)
    if args.format != "bundle" or any(value is not None for value in criteria):
        return _export_slice(settings, args)
    if args.target is None:
        raise _Stop("give the directory to export the bundle into")
    check_export_directory(args.target)  # before anything is opened or generated
    vkeys = [key.vkey for key in ledger_verifiers(settings)]  # current first, then rotated
    vkey = " ".join(vkeys)
    progress = _progress_bar("exporting", sys.stderr)

    async def export(db: LedgerDatabase) -> Any:
        return await export_bundle(db, vkeys, settings.log_origin, args.target, progress=progress)

    manifest = _with_ledger(settings, export)
    _end_progress(progress, sys.stderr)
    print(
        f"exported {manifest.size:,} entries and {manifest.counts['checkpoints']:,} "
        f"checkpoints (tree size {manifest.size:,}, root {manifest.root}) to "
        f"{args.target}; check it with `onceonly ledger verify --bundle "
        f"{args.target} --vkey '{vkey}'`"
    )
    return EXIT_OK


def _export_slice(settings: Settings, args: argparse.Namespace) -> int:
    """``export`` with slice options or another format (see app.audit.export)."""
    from app.audit.export import EvidenceSlice, LedgerView, preview, slice_files, stream_slice
    from app.keys import ledger_signer, ledger_verifiers, pseudonym_key
    from consent.identity import Pseudonymizer
    from ledger.bundle import check_export_directory
    from ledger.evidence import write_directory
    from ledger.log import TransparencyLog

    options = {
        "from": args.since,
        "to": args.until,
        "ministry": args.ministry,
        "system": args.system,
        "person": args.person,
    }
    try:
        evidence = EvidenceSlice.from_params({k: v for k, v in options.items() if v})
    except ValueError as exc:
        raise _Stop(str(exc)) from None
    if args.format == "bundle":
        if args.target is None:
            raise _Stop("give the directory to export the bundle into")
        check_export_directory(args.target)  # before anything is opened
    people = None
    if evidence.person is not None:
        key_file = settings.pseudonym_key_file or Path(settings.secrets_dir) / "pseudonym.key"
        if not Path(key_file).is_file():  # a new key would give a pseudonym nobody has
            raise _Stop(f"there is no pseudonym key at {key_file}; --person needs it")
        people = Pseudonymizer(pseudonym_key(settings))
    selection = evidence.selection(people)
    signer = ledger_signer(settings, create=False)
    keys = ledger_verifiers(settings)  # the published checkpoint may predate a rotation
    witnesses = tuple(vkey for vkey, _url in settings.witnesses)
    progress = _progress_bar("exporting", sys.stderr)

    async def export(db: LedgerDatabase) -> Any:
        log = TransparencyLog(db, signer, settings.log_origin, retired=keys)  # never opened
        view = LedgerView(log, witnesses, settings.witness_quorum)
        total = (await preview(view, selection)).count
        if args.format == "bundle":
            files = slice_files(view, selection, progress=progress, total=total)
            return await write_directory(files, args.target)
        pieces = stream_slice(view, selection, args.format, progress=progress, total=total)
        await _write_stream(pieces, args.target)
        return total

    result = _with_ledger(settings, export)
    _end_progress(progress, sys.stderr)
    if args.format != "bundle":
        if args.target is not None:
            print(f"exported {result:,} entries to {args.target}", file=sys.stderr)
        return EXIT_OK
    openings = " with their openings" if result.openings else ""
    print(
        f"exported {result.counts['entries']:,} entries{openings} "
        f"({result.selection.describe()}), proven in the checkpoint of tree size "
        f"{result.size:,}, to {args.target}; check it with `onceonly ledger verify "
        f"--bundle {args.target} --vkey '{result.vkey}'`"
    )
    return EXIT_OK


async def _write_stream(pieces: AsyncIterator[bytes], target: Path | None) -> None:
    """Write the pieces to ``target`` (created or replaced), or to standard output."""
    if target is None or str(target) == "-":
        out = sys.stdout.buffer
        async for piece in pieces:
            out.write(piece)
        out.flush()
        return
    with target.open("wb") as out:
        async for piece in pieces:
            out.write(piece)


def _vkey(settings: Settings, args: argparse.Namespace) -> int:
    from app.keys import ledger_signer

    print(ledger_signer(settings, create=False).verifier().vkey)
    return EXIT_OK


def _verifier(settings: Settings, vkey: str | None) -> Any:
    """The log keys to trust: ``--vkey`` (one key, or several separated by white space,
    as /ledger/vkeys lists them), else every checkpoint key of this installation."""
    from app.keys import ledger_verifiers
    from ledger.errors import NoteError
    from ledger.note import parse_vkey

    if vkey is None:
        return ledger_verifiers(settings)  # the current key and every rotated one
    if not vkey.split():
        raise _Stop("--vkey is empty")
    try:
        return tuple(parse_vkey(key) for key in vkey.split())
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
