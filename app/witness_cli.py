"""``onceonly witness``: a C2SP tlog-witness for the commissioner's office.

    onceonly witness init --name NAME --state DIR      new witness key, prints its vkey
    onceonly witness add-log --state DIR --vkey VKEY [--origin ORIGIN] [--replace]
    onceonly witness serve --state DIR [--host H] [--port P]

The witness keeps everything in DIR, outside the ledger's database: its key in
``witness.key`` (mode 0600) and, per trusted log, the last cosigned size and root hash
in ``state.json``, replaced atomically. ``serve`` answers ``POST /add-checkpoint`` as
the spec says (ledger.witness holds the rule). A split view is logged at ERROR level
with the conflicting checkpoint, and the log gets no further cosignature.

When a log rotates its checkpoint key, it signs each checkpoint with its old and new
keys for a while; ``add-log --replace`` switches the witness to the new key, keeping the
size and root hash it cosigned last, so the log stays checked for consistency across
the rotation. A running ``serve`` follows ``state.json`` when ``add-log`` replaces it.

Errors end with one ``onceonly: error: ...`` line and exit 1 (printed here, not raised
as app.cli.CommandError, for the reason given in app.ledger_cli).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from app.keyfiles import file_stamp
from ledger import witness
from ledger.errors import NoteError
from ledger.note import Cosigner

if TYPE_CHECKING:
    from app.settings import Settings

KEY_FILE = "witness.key"
STATE_FILE = "state.json"
MAX_BODY = 64 * 1024

EXIT_FAILURE = 1

log = logging.getLogger("onceonly.witness")

Handler = Callable[["Settings", argparse.Namespace], int]


class _Stop(Exception):
    """A witness command cannot go on; the message is the one line to print."""


def add_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Register ``witness`` and its subcommands on the ``onceonly`` command's subparsers."""
    parser = commands.add_parser("witness", help="run a C2SP tlog-witness that cosigns logs")
    actions = parser.add_subparsers(dest="witness_command", metavar="ACTION", required=True)

    init = actions.add_parser("init", help="create a witness key and empty state in DIR")
    init.add_argument("--name", required=True, help="the witness key name, e.g. ipc.on.ca/w1")
    init.add_argument("--state", required=True, type=Path, metavar="DIR")
    init.set_defaults(handler=_guarded(_init))

    add_log = actions.add_parser("add-log", help="trust a log's checkpoint key")
    add_log.add_argument("--state", required=True, type=Path, metavar="DIR")
    add_log.add_argument("--vkey", required=True, help="the log's verifier key")
    add_log.add_argument("--origin", help="the log's origin (default: the key's name)")
    add_log.add_argument(
        "--replace",
        action="store_true",
        help="the log rotated its key: trust VKEY instead of its previous key, keeping "
        "the size and root hash cosigned so far",
    )
    add_log.set_defaults(handler=_guarded(_add_log))

    serve = actions.add_parser("serve", help="answer add-checkpoint requests over HTTP")
    serve.add_argument("--state", required=True, type=Path, metavar="DIR")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    serve.set_defaults(handler=_guarded(_serve))


def _guarded(handler: Handler) -> Handler:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return handler(settings, args)
        except (_Stop, witness.WitnessError, OSError) as exc:
            print(f"onceonly: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_FAILURE

    return run


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return " ".join(str(exc).split())


def _init(settings: Settings, args: argparse.Namespace) -> int:
    directory: Path = args.state
    try:
        cosigner = Cosigner(args.name, Ed25519PrivateKey.generate())
    except NoteError as exc:
        raise _Stop(f"--name: {exc}") from None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = directory / KEY_FILE
    if key_path.exists():
        raise _Stop(f"{key_path} already exists; this directory already holds a witness")
    _write_atomically(key_path, (witness.encode_cosigner_key(cosigner) + "\n").encode())
    if not (directory / STATE_FILE).exists():
        save_state(directory, witness.WitnessState())
    print(cosigner.verifier().vkey)
    return 0


def _add_log(settings: Settings, args: argparse.Namespace) -> int:
    directory: Path = args.state
    load_cosigner(directory)  # an initialised witness directory, not a typo
    state = load_state(directory)
    origin = args.origin or args.vkey.split("+", 1)[0]
    if args.replace:
        state = replace_log_key(state, args.vkey.strip(), origin)
    else:
        state = witness.add_log(state, args.vkey.strip(), args.origin)
    save_state(directory, state)
    print(f"trusting log {origin} at size {state.logs[origin].size}")
    return 0


def replace_log_key(state: witness.WitnessState, vkey: str, origin: str) -> witness.WitnessState:
    """``state`` with the known log ``origin`` trusted under ``vkey`` instead of its old
    key; the size and root hash cosigned so far (and any split view) are kept.

    Raises WitnessError for a malformed or non-Ed25519 key, and _Stop for a log the
    witness does not know yet (add it without --replace).
    """
    known = state.logs.get(origin)
    if known is None:
        raise _Stop(f"log {origin} is not trusted yet; add it without --replace")
    checked = witness.add_log(witness.WitnessState(), vkey, origin).logs[origin]
    return state.with_log(origin, dataclasses.replace(known, vkey=checked.vkey))


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    if not 0 < args.port < 65536:
        raise _Stop(f"--port must be from 1 to 65535, not {args.port}")
    app = create_witness_app(args.state)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"witness {app.state.witness.vkey} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False)
    return 0


class WitnessService:
    """The witness of one state directory: one request decided at a time."""

    def __init__(self, directory: Path, clock: Callable[[], int] = lambda: int(time.time())):
        self.directory = directory
        self.cosigner = load_cosigner(directory)
        self._stamp = file_stamp([directory / STATE_FILE])  # before reading it
        self.state = load_state(directory)
        self.clock = clock
        # The spec requires checking the old size and persisting the new one atomically.
        self._lock = asyncio.Lock()

    @property
    def vkey(self) -> str:
        return self.cosigner.verifier().vkey

    async def add_checkpoint(self, body: bytes) -> str:
        """Decide one request, persist the new state, return the cosignature line.

        Raises the WitnessError of ledger.witness.add_checkpoint; a split view is
        persisted (the log suspended) before SplitView propagates.
        """
        async with self._lock:
            self._follow_state_file()
            try:
                state, line = witness.add_checkpoint(self.state, body, self.cosigner, self.clock())
            except witness.SplitView as split:
                self._save(split.state)
                raise
            self._save(state)
            return line

    def _follow_state_file(self) -> None:
        # `onceonly witness add-log` (a new log, or --replace after a log's key rotation)
        # may have replaced state.json while serving: use it, never write older state.
        stamp = file_stamp([self.directory / STATE_FILE])
        if stamp != self._stamp:
            self.state = load_state(self.directory)
            self._stamp = stamp

    def _save(self, state: witness.WitnessState) -> None:
        save_state(self.directory, state)
        self.state = state
        self._stamp = file_stamp([self.directory / STATE_FILE])


def create_witness_app(directory: Path) -> Starlette:
    """The witness's HTTP interface: ``POST /add-checkpoint``.

    Raises WitnessError or OSError when DIR holds no usable key or state.
    """
    service = WitnessService(directory)

    async def add_checkpoint(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("request too large\n", status_code=413)
        try:
            line = await service.add_checkpoint(body)
        except witness.SplitView as split:
            log.error(
                "SPLIT VIEW: %s; log suspended. Checkpoint cosigned before: size %d. "
                "Conflicting checkpoint:\n%s",
                split,
                split.size,
                split.evidence.decode(errors="replace"),
            )
            return _size_response(split.size)
        except witness.Conflict as conflict:
            return _size_response(conflict.size)
        except witness.InvalidProof as exc:
            # A correctly signed checkpoint without a valid proof may be evidence too.
            log.warning("refused a checkpoint: %s\n%s", exc, body.decode(errors="replace"))
            return PlainTextResponse(f"{exc}\n", status_code=exc.status)
        except witness.WitnessError as exc:
            log.info("refused a checkpoint (%d): %s", exc.status, exc)
            return PlainTextResponse(f"{exc}\n", status_code=exc.status)
        return PlainTextResponse(line)

    app = Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"])])
    app.state.witness = service
    return app


def _size_response(size: int) -> Response:
    return Response(f"{size}\n", status_code=409, media_type=witness.SIZE_MEDIA_TYPE)


def load_cosigner(directory: Path) -> Cosigner:
    """The witness key in DIR. Raises _Stop when it is missing or readable by others."""
    path = directory / KEY_FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise _Stop(f"{path} does not exist; run `onceonly witness init` first") from None
    if mode & 0o077:
        raise _Stop(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    return witness.parse_cosigner_key(path.read_text())


def load_state(directory: Path) -> witness.WitnessState:
    """The witness state in DIR. Raises _Stop or WitnessError when unusable."""
    path = directory / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise _Stop(f"{path} does not exist; run `onceonly witness init` first") from None
    except json.JSONDecodeError:
        raise _Stop(f"{path} is not JSON") from None
    return witness.WitnessState.from_json(data)


def save_state(directory: Path, state: witness.WitnessState) -> None:
    """Replace the state file atomically (and durably) with ``state``."""
    data = json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"
    _write_atomically(directory / STATE_FILE, data.encode())


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
