"""Onceonly's side of C2SP tlog-witness: get checkpoints cosigned and publish them.

``submit`` sends the newest checkpoint to one witness with a consistency proof from the
size that witness last cosigned, checks the cosignature it returns, and stores the
signature line in ``ledger_cosignature``. ``published_checkpoint`` is the witness
policy: the newest checkpoint cosigned by at least ``quorum`` of the configured
witnesses, with every stored cosignature attached after the log's own signature.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from ledger.errors import LedgerError, NoteError
from ledger.log import TransparencyLog
from ledger.note import CosignatureVerifier, open_note, parse_vkey
from ledger.witness import SIZE_MEDIA_TYPE, format_request

log = logging.getLogger("onceonly.witnessing")

_TIMEOUT = 10.0


class WitnessingError(LedgerError):
    """A witness did not cosign: unreachable, refused, or answered with a bad cosignature."""


@dataclass
class Witness:
    """A witness Onceonly submits to, and the size it last cosigned for this log.

    ``cosigned_size`` starts at 0 and is corrected from the witness's 409 answers.
    """

    url: str
    verifier: CosignatureVerifier
    cosigned_size: int = 0

    @classmethod
    def from_setting(cls, vkey: str, url: str) -> Witness:
        """A witness from one ``vkey=URL`` pair of ONCEONLY_WITNESSES (already checked)."""
        verifier = parse_vkey(vkey)
        assert isinstance(verifier, CosignatureVerifier)
        return cls(url.rstrip("/"), verifier)

    @property
    def vkey(self) -> str:
        return self.verifier.vkey


async def submit(ledger: TransparencyLog, witness: Witness, http: httpx.AsyncClient) -> str | None:
    """Have ``witness`` cosign the newest checkpoint; store and return its signature line.

    Returns None when that checkpoint is already cosigned by this witness. Raises
    WitnessingError when the witness is unreachable, refuses, or returns no valid
    cosignature from its key (nothing is stored then).
    """
    latest = await ledger.latest_checkpoint()
    if latest is None or await _stored_line(ledger, latest.size, witness.vkey) is not None:
        return None
    for _ in range(2):  # a 409 tells the size the witness holds; retry once from there
        if witness.cosigned_size > latest.size:
            raise WitnessingError(
                f"witness {witness.verifier.name} cosigned size {witness.cosigned_size}, "
                f"beyond this log's {latest.size}: a checkpoint this log does not hold"
            )
        proof = await ledger.consistency_proof(witness.cosigned_size, latest.size)
        body = format_request(witness.cosigned_size, proof, latest.note)
        response = await _post(http, witness, body)
        if response.status_code == 409:
            size = _conflict_size(response, witness)
            if size == witness.cosigned_size:
                raise WitnessingError(
                    f"witness {witness.verifier.name} holds another root hash for size {size}: "
                    "a split view"
                )
            witness.cosigned_size = size
            continue
        if response.status_code != 200:
            raise WitnessingError(
                f"witness {witness.verifier.name} refused size {latest.size} "
                f"({response.status_code}): {response.text.strip()[:200]}"
            )
        line = _cosignature(latest.note, response.text, witness)
        await _store(ledger, latest.size, witness.vkey, line)
        witness.cosigned_size = latest.size
        return line
    raise WitnessingError(f"witness {witness.verifier.name} keeps answering 409")


async def submit_to_all(
    ledger: TransparencyLog, witnesses: Sequence[Witness], http: httpx.AsyncClient
) -> None:
    """Submit the newest checkpoint to every witness; log (not raise) each failure."""
    for witness in witnesses:
        try:
            await submit(ledger, witness, http)
        except WitnessingError as exc:
            log.error("%s", exc)


async def published_checkpoint(
    ledger: TransparencyLog, witness_vkeys: Sequence[str], quorum: int
) -> bytes | None:
    """The newest checkpoint cosigned by ``quorum`` of ``witness_vkeys``, cosigned.

    The note is the log's signed checkpoint followed by the stored cosignature lines of
    its size, oldest first. None when no checkpoint meets the quorum yet.
    """
    if quorum <= 0:
        stored = await ledger.latest_checkpoint()
    else:
        marks = ", ".join("?" for _ in witness_vkeys)
        # Only "?" marks are joined into the text; the keys travel as parameters.
        sql = (
            "SELECT c.size FROM ledger_checkpoint c WHERE (SELECT COUNT(*) FROM "  # noqa: S608
            f"ledger_cosignature w WHERE w.size = c.size AND w.witness IN ({marks})) >= ? "
            "ORDER BY c.size DESC LIMIT 1"
        )
        rows = await ledger.db.fetch(
            sql,
            *witness_vkeys,
            quorum,
        )
        stored = await ledger.checkpoint(int(rows[0][0])) if rows else None
    if stored is None:
        return None
    lines = await ledger.db.fetch(
        "SELECT line FROM ledger_cosignature WHERE size = ? ORDER BY id", stored.size
    )
    return stored.note + "".join(str(row[0]) for row in lines).encode()


async def _post(http: httpx.AsyncClient, witness: Witness, body: bytes) -> httpx.Response:
    try:
        return await http.post(f"{witness.url}/add-checkpoint", content=body, timeout=_TIMEOUT)
    except httpx.HTTPError as exc:
        raise WitnessingError(f"witness {witness.url} is unreachable: {exc}") from None


def _conflict_size(response: httpx.Response, witness: Witness) -> int:
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    text = response.text
    if media_type != SIZE_MEDIA_TYPE or not text.endswith("\n") or not text[:-1].isdigit():
        raise WitnessingError(f"witness {witness.verifier.name} sent a malformed 409 answer")
    return int(text[:-1])


def _cosignature(note: bytes, body: str, witness: Witness) -> str:
    # The spec: append the answer to the checkpoint and open it with the witness key;
    # lines from other keys are ignored.
    lines = body.splitlines(keepends=True)
    if not lines or not all(line.startswith("\N{EM DASH} ") for line in lines):
        raise WitnessingError(f"witness {witness.verifier.name} sent no signature lines")
    ident = (witness.verifier.name, witness.verifier.key_id)
    for line in lines:
        try:
            opened = open_note(note + line.encode(), [witness.verifier])
        except NoteError:
            continue
        if any((s.name, s.key_id) == ident for s in opened.signatures):
            return line
    raise WitnessingError(f"witness {witness.verifier.name} sent no valid cosignature")


async def _stored_line(ledger: TransparencyLog, size: int, vkey: str) -> str | None:
    rows = await ledger.db.fetch(
        "SELECT line FROM ledger_cosignature WHERE size = ? AND witness = ?", size, vkey
    )
    return str(rows[0][0]) if rows else None


async def _store(ledger: TransparencyLog, size: int, vkey: str, line: str) -> None:
    async with ledger.db.write() as tx:
        await tx.execute(
            "INSERT INTO ledger_cosignature (size, witness, line, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (size, witness) DO NOTHING",
            size,
            vkey,
            line,
            datetime.now(UTC),
        )
