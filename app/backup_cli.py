"""``onceonly backup`` and ``onceonly restore``: a copy of the installation, and back.

    onceonly backup FILE [--with-secrets] [--pg-bin DIR]
    onceonly restore FILE (--checkpoint NOTE | --ask-witnesses | --no-checkpoint) [--pg-bin DIR]

``backup`` runs while Onceonly serves. ``restore`` goes into the configured database,
which must be empty (and on SQLite not in use), then verifies the ledger and compares it
with a cosigned checkpoint (app.backup says how). Exit status 0: done; 1: the backup
or restore could not be made or was refused, with one ``onceonly: error: ...`` line
(printed here, not raised as app.cli.CommandError, for the reason app.ledger_cli gives);
2: the options do not say how to check the restored ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli_errors import Handler, guarded

if TYPE_CHECKING:
    from app.settings import Settings

EXIT_OK = 0
EXIT_USAGE = 2


def add_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Register ``backup`` and ``restore`` on the ``onceonly`` command's subparsers."""
    backup = commands.add_parser(
        "backup",
        help="write a consistent backup of the database while Onceonly runs",
        description="Write the configured database to FILE (a new file, mode 0600) with a "
        "manifest of what it holds. The secrets of var/secrets are left out unless "
        "--with-secrets is given: back them up separately.",
    )
    backup.add_argument("file", type=Path, metavar="FILE", help="the backup file to create")
    backup.add_argument(
        "--with-secrets",
        action="store_true",
        help="also put the files of var/secrets (the ledger, token, receipt and pseudonym "
        "keys) in the backup; the file must then be protected like the keys themselves",
    )
    backup.add_argument(
        "--pg-bin", type=Path, metavar="DIR", help="where pg_dump is (default: on PATH)"
    )
    backup.set_defaults(handler=_guarded(_backup))

    restore = commands.add_parser(
        "restore",
        help="restore a backup into an empty database and verify its ledger",
        description="Restore FILE into the configured database, which must be empty (on "
        "SQLite: stop Onceonly first). Runs the migrations the backup lacks, verifies every "
        "entry, checkpoint and tile of the ledger, and compares it with a cosigned "
        "checkpoint: a restore behind that checkpoint lost entries and is refused.",
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="a file `onceonly backup` wrote")
    restore.add_argument(
        "--checkpoint",
        type=Path,
        metavar="NOTE",
        help="the newest cosigned checkpoint you hold (e.g. saved from /ledger/checkpoint): "
        "the restored ledger must reach it with the same root",
    )
    restore.add_argument(
        "--ask-witnesses",
        action="store_true",
        help="have the configured witnesses (ONCEONLY_WITNESSES) check the restored ledger "
        "against the checkpoints they cosigned; they cosign it if it is consistent",
    )
    restore.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="compare with no cosigned checkpoint (a restore drill); the ledger is still "
        "verified in full",
    )
    restore.add_argument(
        "--keep-secrets",
        action="store_true",
        help="use the keys already in var/secrets, not those in the backup (for keys "
        "rotated since the backup)",
    )
    restore.add_argument(
        "--pg-bin", type=Path, metavar="DIR", help="where pg_restore is (default: on PATH)"
    )
    restore.set_defaults(handler=_guarded(_restore))


def _user_errors() -> tuple[type[BaseException], ...]:
    from app.backup import BackupError
    from app.db import DatabaseError
    from app.keyfiles import KeyFileError
    from ledger.errors import LedgerError

    return (BackupError, DatabaseError, KeyFileError, LedgerError)


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, _user_errors, database="database error")


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from app.backup import create_backup, describe_ledger

    summary = asyncio.run(
        create_backup(settings, args.file, with_secrets=args.with_secrets, pg_bin=args.pg_bin)
    )
    manifest = summary.manifest
    print(
        f"backed up the {manifest.database} database at migration {manifest.migration} "
        f"({manifest.facts.rows:,} rows in {len(manifest.facts.tables)} tables; "
        f"{describe_ledger(manifest.facts)}) to {summary.path} ({summary.bytes:,} bytes)"
    )
    if manifest.secrets:
        print(
            f"warning: {summary.path} holds {len(manifest.secrets)} secret key files of "
            f"{settings.secrets_dir}: whoever has it can sign as this ledger and link "
            "pseudonyms to people. Keep it encrypted and apart from the database backups.",
            file=sys.stderr,
        )
    else:
        print(
            f"The secrets in {settings.secrets_dir} are not in this backup: back them up "
            "separately (a restore needs the ledger key to verify and continue the ledger)."
        )
    return EXIT_OK


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from app.backup import RestoreOptions, read_checkpoint_file, restore_backup

    chosen = args.checkpoint is not None or args.ask_witnesses
    if chosen == args.no_checkpoint:
        print(
            "onceonly: error: say how to check the restored ledger: --checkpoint NOTE and/or "
            "--ask-witnesses, or --no-checkpoint for a drill"
            if not chosen
            else "onceonly: error: --no-checkpoint cannot go with --checkpoint or --ask-witnesses",
            file=sys.stderr,
        )
        return EXIT_USAGE
    options = RestoreOptions(
        checkpoint=read_checkpoint_file(args.checkpoint) if args.checkpoint else None,
        checkpoint_name=f"the checkpoint in {args.checkpoint}",
        ask_witnesses=args.ask_witnesses,
        keep_secrets=args.keep_secrets,
        pg_bin=args.pg_bin,
    )
    asyncio.run(restore_backup(settings, args.file, options, say=_say))
    print("Restore complete: start Onceonly (`onceonly serve`).")
    return EXIT_OK


def _say(line: str) -> None:
    print(line, flush=True)
