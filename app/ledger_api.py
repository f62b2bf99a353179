"""The ledger's public read API under ``/ledger/``.

The C2SP tlog-tiles layout (``checkpoint``, ``tile/<L>/<N>[.p/<W>]``,
``tile/entries/<N>[.p/<W>]``) so that standard tools can mirror and check the log, the
verifier key at ``vkey`` (every key the log has had at ``vkeys``), and JSON endpoints
for inclusion and consistency proofs and a tlog-proof receipt of any entry.
"""

from __future__ import annotations

import base64

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app.problems import Problem
from app.witnessing import published_checkpoint
from ledger.database import LedgerUnavailable
from ledger.errors import LedgerError, ProofError, TileError
from ledger.log import NotFound, TransparencyLog
from ledger.tiles import parse_tile_path

IMMUTABLE = "public, max-age=31536000, immutable"
FRESH = "no-cache"


def _ledger(request: Request) -> TransparencyLog:
    return request.app.state.services.ledger


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _int_param(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise Problem(
                400,
                "validation",
                "Validation failed",
                f"The query parameter {name} is required.",
                errors=[{"field": name, "message": "required"}],
            )
        return default
    if not (raw.isascii() and raw.isdigit()) or (len(raw) > 1 and raw[0] == "0") or len(raw) > 19:
        raise Problem(
            400,
            "validation",
            "Validation failed",
            f"The query parameter {name} must be a non-negative decimal integer.",
            errors=[{"field": name, "message": "not a non-negative integer"}],
        )
    return int(raw)


def _problem(exc: LedgerError) -> Problem:
    if isinstance(exc, NotFound):
        return Problem(404, "ledger-not-found", "Not in the ledger", str(exc))
    if isinstance(exc, (ProofError, TileError)):
        return Problem(400, "invalid-ledger-request", "Invalid ledger request", str(exc))
    if isinstance(exc, LedgerUnavailable):
        return Problem(
            503,
            "ledger-unavailable",
            "Ledger unavailable",
            "The ledger cannot be read right now. Try again shortly.",
            headers={"Retry-After": "5"},
        )
    return Problem(500, "internal", "Internal error", "The ledger could not answer.")


async def checkpoint(request: Request) -> Response:
    # The witness policy: the newest checkpoint with ONCEONLY_WITNESS_QUORUM cosignatures,
    # the log's signature first, then every stored witness cosignature of that size.
    settings = request.app.state.settings
    vkeys = [vkey for vkey, _ in settings.witnesses]
    try:
        note = await published_checkpoint(_ledger(request), vkeys, settings.witness_quorum)
    except LedgerError as exc:
        raise _problem(exc) from exc
    if note is None:
        detail = "No checkpoint is cosigned by enough witnesses yet."
        if not settings.witness_quorum:
            detail = "The log has no checkpoint."
        raise Problem(404, "ledger-not-found", "Not in the ledger", detail)
    return PlainTextResponse(note, headers={"Cache-Control": FRESH})


async def vkey(request: Request) -> Response:
    # Not immutable: `onceonly keys rotate checkpoint` changes the current key.
    return PlainTextResponse(_ledger(request).vkey + "\n", headers={"Cache-Control": FRESH})


async def vkeys(request: Request) -> Response:
    """Every key the log's checkpoints may be signed with, one vkey per line, newest
    first: the first line is the current key (the one ``vkey`` serves)."""
    lines = "".join(key.vkey + "\n" for key in _ledger(request).verifiers)
    return PlainTextResponse(lines, headers={"Cache-Control": FRESH})


async def tile(request: Request) -> Response:
    path = "tile/" + request.path_params["path"]
    log = _ledger(request)
    try:
        ref = parse_tile_path(path)
        if ref.is_entries:
            data = await log.entry_bundle(ref.index, ref.width)
        else:
            data = await log.tile(ref.level, ref.index, ref.width)
    except LedgerError as exc:
        raise _problem(exc) from exc
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Cache-Control": IMMUTABLE},
    )


async def inclusion_proof(request: Request) -> Response:
    log = _ledger(request)
    index = _int_param(request, "index")
    try:
        latest = await log.latest_checkpoint()
        size = _int_param(request, "size", latest.size if latest else 0)
        proof = await log.inclusion_proof(index, size)
        leaf, digest = await log.entry(index)
        note = (await log.checkpoint(size)).note.decode() if size else None
    except LedgerError as exc:
        raise _problem(exc) from exc
    body = {
        "index": index,
        "tree_size": size,
        "leaf_hash": _b64(digest),
        "entry": _b64(leaf),
        "proof": [_b64(h) for h in proof],
    }
    if note is not None:
        body["checkpoint"] = note
    return JSONResponse(body)


async def consistency_proof(request: Request) -> Response:
    old = _int_param(request, "old")
    new = _int_param(request, "new")
    try:
        proof = await _ledger(request).consistency_proof(old, new)
    except LedgerError as exc:
        raise _problem(exc) from exc
    return JSONResponse({"old_size": old, "new_size": new, "proof": [_b64(h) for h in proof]})


async def receipt(request: Request) -> Response:
    raw = request.path_params["index"]
    if not (raw.isascii() and raw.isdigit()) or (len(raw) > 1 and raw[0] == "0") or len(raw) > 19:
        raise Problem(400, "validation", "Validation failed", "The entry index must be a number.")
    index = int(raw)
    log = _ledger(request)
    try:
        leaf, _ = await log.entry(index)
        data = await log.receipt(index, extra=leaf)
    except LedgerError as exc:
        raise _problem(exc) from exc
    return PlainTextResponse(
        data,
        headers={"Content-Disposition": f'attachment; filename="onceonly-entry-{index}.proof"'},
    )


routes = [
    Route("/ledger/checkpoint", checkpoint, methods=["GET"]),
    Route("/ledger/vkey", vkey, methods=["GET"]),
    Route("/ledger/vkeys", vkeys, methods=["GET"]),
    Route("/ledger/tile/{path:path}", tile, methods=["GET"]),
    Route("/ledger/proof/inclusion", inclusion_proof, methods=["GET"]),
    Route("/ledger/proof/consistency", consistency_proof, methods=["GET"]),
    Route("/ledger/receipt/{index}", receipt, methods=["GET"]),
]
