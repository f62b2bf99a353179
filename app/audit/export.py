"""Evidence export: a slice of the ledger read from the database, streamed as a bundle
(tar.gz), CSV or JSON Lines.

A slice is chosen by period, ministry, system and person (see EvidenceSlice). Every
format holds the same entries: those matching the slice among the entries covered by
the newest *published* checkpoint (cosigned by the witness quorum, see
``app.witnessing.published_checkpoint``), in index order. Entries are read in batches
by index, so a slice of millions of entries never sits in memory; a bundle's inclusion
proofs are computed per batch from the stored tiles (``ledger.evidence`` writes and
verifies the bundle itself).

The HTTP edge (the audit portal, the audit API) and ``onceonly ledger export`` call
``export_stream``; nothing here knows about requests.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from app.audit.queries import LedgerFilters, filter_sql
from app.i18n import gettext as _
from app.services import Services
from app.witnessing import published_checkpoint
from consent.identity import Pseudonymizer
from ledger.checkpoint import open_checkpoint
from ledger.database import LedgerDatabase
from ledger.entry import CODE, decode_entry
from ledger.errors import CheckpointError, LedgerError
from ledger.evidence import (
    EvidenceEntry,
    EvidenceHeader,
    Selection,
    bundle_files,
    tar_stream,
)
from ledger.log import TransparencyLog
from ledger.merkle import inclusion_proof_nodes, leaf_hash, read_plan
from ledger.tilestore import TileStore
from ledger.verify import Progress, b64

#: The formats an export comes in.
FORMATS = ("bundle", "csv", "jsonl")
#: Entries read (and proven) per database query.
BATCH = 500
#: The longest person identifier accepted.
MAX_PERSON_ID = 200
#: The columns of the CSV, and the keys of each JSON Lines object, in order.
COLUMNS = (
    "index",
    "time",
    "type",
    "organisation",
    "system",
    "purpose",
    "basis_kind",
    "basis_ref",
    "categories",
    "query_id",
    "case_id",
    "bulk_job_id",
    "hidden_until",
    "hidden_reason",
    "recipient",
    "sources",
    "reasons",
    "leaf_hash",
)

_MEDIA_TYPES = {
    "bundle": "application/gzip",
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/jsonl; charset=utf-8",
}
_EXTENSIONS = {"bundle": ".tar.gz", "csv": ".csv", "jsonl": ".jsonl"}


class NothingPublished(LedgerError):
    """No checkpoint is published yet (none is cosigned by the witness quorum)."""


@dataclass(frozen=True)
class EvidenceSlice:
    """The entries an auditor asked for: a period (UTC dates, both included), a ministry
    (the organisation that acted), a system, and a person; each optional.

    ``person`` is the raw identifier as typed; it is turned into the pseudonym with the
    installation's key (``services.people``) and never shown, logged or recorded.
    """

    since: date | None = None
    until: date | None = None
    ministry: str | None = None
    system: str | None = None
    person: str | None = field(default=None, repr=False)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> EvidenceSlice:
        """The slice from the keys ``from``, ``to``, ``ministry``, ``system``, ``person``.

        Missing or blank values leave a criterion out. Raises ValueError with a message
        for a person (in the current language) when a date is not YYYY-MM-DD, the period
        ends before it starts, a code is not a valid code, or the identifier is too long.
        """

        def text(name: str) -> str | None:
            value = str(params.get(name) or "").strip()
            return value or None

        since = _date(text("from"), _("The start of the period must be a date (YYYY-MM-DD)."))
        until = _date(text("to"), _("The end of the period must be a date (YYYY-MM-DD)."))
        if since and until and until < since:
            raise ValueError(_("The period ends before it starts."))
        ministry, system, person = text("ministry"), text("system"), text("person")
        if ministry is not None and not CODE.fullmatch(ministry):
            raise ValueError(_("The ministry code is not valid."))
        if system is not None and not CODE.fullmatch(system):
            raise ValueError(_("The system code is not valid."))
        if person is not None and len(person) > MAX_PERSON_ID:
            raise ValueError(_("The person identifier is too long."))
        return cls(since, until, ministry, system, person)

    def selection(self, people: Pseudonymizer | None) -> Selection:
        """The slice as the bundle records it (with the pseudonym, never the identifier).

        ``people`` pseudonymises the person; it may be None when the slice names nobody
        (ValueError otherwise).
        """
        pseudonym = None
        if self.person is not None:
            if people is None:
                raise ValueError("a person's slice needs the pseudonym key")
            pseudonym = people.person(self.person)
        return Selection(self.since, self.until, self.ministry, self.system, pseudonym)

    def trail(self, people: Pseudonymizer | None) -> dict[str, str]:
        """The criteria set, as strings for the audit trail (the pseudonym, not the id)."""
        values = self.selection(people).to_json()
        return {name: value for name, value in values.items() if value is not None}


def check_format(fmt: str) -> str:
    """``fmt`` when it is one of FORMATS; else ValueError with a message for a person."""
    if fmt not in FORMATS:
        raise ValueError(_("Choose a format: bundle, CSV or JSON Lines."))
    return fmt


def media_type(fmt: str) -> str:
    """The Content-Type of an export in ``fmt``. Raises ValueError for another format."""
    return _MEDIA_TYPES[check_format(fmt)]


def filename(evidence: EvidenceSlice, fmt: str) -> str:
    """A download's file name: the slice's criteria (never the person's identifier).

    Only ASCII letters, digits, ``.``, ``_`` and ``-``. Raises ValueError for an
    unknown format.
    """
    parts = ["onceonly-evidence"]
    parts += [code.replace(":", "-") for code in (evidence.ministry, evidence.system) if code]
    parts += [day.isoformat() for day in (evidence.since, evidence.until) if day]
    if evidence.person:
        parts.append("person")
    return "-".join(parts) + _EXTENSIONS[check_format(fmt)]


@dataclass(frozen=True)
class Published:
    """The checkpoint an export is proven against: the exact signed note with its
    cosignature lines, its tree size, and the vkey of the log key that signed it."""

    note: bytes
    size: int
    vkey: str


@dataclass(frozen=True)
class LedgerView:
    """What an export reads: the log and its witness policy (vkeys and quorum)."""

    ledger: TransparencyLog
    witnesses: tuple[str, ...] = ()
    quorum: int = 0

    @classmethod
    def of(cls, services: Services) -> LedgerView:
        settings = services.settings
        witnesses = tuple(vkey for vkey, _url in settings.witnesses)
        return cls(services.ledger, witnesses, settings.witness_quorum)

    async def published(self) -> Published:
        """The published checkpoint (with its cosignatures). Raises NothingPublished."""
        note = await published_checkpoint(self.ledger, self.witnesses, self.quorum)
        if note is None:
            raise NothingPublished(_("No checkpoint is cosigned by enough witnesses yet."))
        # After a key rotation the log has several keys; name the one that signed.
        for key in self.ledger.verifiers:
            try:
                checkpoint = open_checkpoint(note, key, origin=self.ledger.origin)
            except CheckpointError:
                continue
            return Published(note, checkpoint.size, key.vkey)
        raise LedgerError("the published checkpoint is not signed by the log's key")


@dataclass(frozen=True)
class Preview:
    """How many entries a slice holds, and the checkpoint they are proven against."""

    count: int
    size: int
    witnesses: int
    quorum: int


async def preview(view: LedgerView, selection: Selection) -> Preview:
    """Count the entries of ``selection`` in the published checkpoint.

    Raises NothingPublished when no checkpoint is published yet.
    """
    size = (await view.published()).size
    conditions, args = filter_sql(_filters(selection), view.ledger.db.kind)
    rows = await view.ledger.db.fetch(
        " ".join(["SELECT COUNT(*) FROM ledger_entry e WHERE e.idx < ?", *conditions]),
        size,
        *args,
    )
    return Preview(int(rows[0][0]), size, len(view.witnesses), view.quorum)


async def export_stream(
    services: Services, evidence: EvidenceSlice, fmt: str
) -> AsyncIterator[bytes]:
    """The slice in ``fmt`` ("bundle": tar.gz, "csv" or "jsonl"), piece by piece.

    The first piece is empty (b""), yielded once the published checkpoint is chosen:
    await it before sending response headers, so that ``NothingPublished`` (no
    checkpoint is cosigned by the quorum yet) or ValueError (unknown format) can still
    become an error answer. A database failure later ends the stream early (a cut
    bundle does not verify).
    """
    selection = evidence.selection(services.people)
    folder = filename(evidence, "bundle").removesuffix(".tar.gz")
    async for piece in stream_slice(LedgerView.of(services), selection, fmt, folder=folder):
        yield piece


async def stream_slice(
    view: LedgerView,
    selection: Selection,
    fmt: str,
    *,
    folder: str = "onceonly-evidence",
    progress: Progress | None = None,
    total: int | None = None,
) -> AsyncIterator[bytes]:
    """``export_stream`` for a given log and selection (the CLI calls this directly).

    ``folder`` is the bundle's folder inside the archive; ``progress(done, total)`` is
    called after each batch of entries.
    """
    check_format(fmt)
    published = await view.published()
    yield b""
    if fmt == "bundle":
        files = slice_files(view, selection, published, progress=progress, total=total)
        async for piece in tar_stream(files, folder=folder):
            yield piece
        return
    batches = _counted(_batches(view.ledger.db, selection, published.size), progress, total)
    if fmt == "csv":
        yield _csv([COLUMNS])
        async for rows in batches:
            yield _csv([_csv_row(readable(int(r[0]), bytes(r[1]))) for r in rows])
    else:
        async for rows in batches:
            yield b"".join(_json_line(readable(int(r[0]), bytes(r[1]))) for r in rows)


async def slice_files(
    view: LedgerView,
    selection: Selection,
    published: Published | None = None,
    *,
    progress: Progress | None = None,
    total: int | None = None,
) -> AsyncIterator[tuple[str, bytes]]:
    """The evidence bundle's files for ``selection`` (see ``ledger.evidence``), proven
    in ``published`` (default: the published checkpoint now). A person's slice carries
    the openings still kept. Raises NothingPublished."""
    published = published or await view.published()
    header = EvidenceHeader(
        origin=view.ledger.origin,
        vkey=published.vkey,
        checkpoint=published.note,
        witnesses=view.witnesses,
        quorum=view.quorum,
        selection=selection,
        openings=selection.pseudonym is not None,
    )
    rows = _batches(view.ledger.db, selection, published.size, openings=header.openings)
    batches = _counted(rows, progress, total)
    entries = _proven(TileStore(view.ledger.db, cache_tiles=512), batches, published.size)
    async for item in bundle_files(header, entries):
        yield item


async def _counted(
    batches: AsyncIterator[list[Sequence[Any]]], progress: Progress | None, total: int | None
) -> AsyncIterator[list[Sequence[Any]]]:
    done = 0
    async for rows in batches:
        yield rows
        done += len(rows)
        if progress is not None:
            progress(done, max(done, total or 0))


def _filters(selection: Selection) -> LedgerFilters:
    return LedgerFilters(
        ministry=selection.ministry,
        system=selection.system,
        since=selection.since,
        until=selection.until,
        pseudonym=selection.pseudonym,
    )


async def _batches(
    db: LedgerDatabase, selection: Selection, size: int, *, openings: bool = False
) -> AsyncIterator[list[Sequence[Any]]]:
    """The slice's rows below ``size`` in index order, BATCH at a time: (idx, leaf,
    leaf_hash[, opening or None]); openings only for a person's slice when asked."""
    conditions, args = filter_sql(_filters(selection), db.kind)
    select = "SELECT e.idx, e.leaf, e.leaf_hash"
    select_args: list[Any] = []
    if openings and selection.pseudonym is not None:
        select += (
            ", (SELECT p.opening FROM ledger_opening p WHERE p.idx = e.idx AND p.pseudonym = ?)"
        )
        select_args.append(selection.pseudonym)
    sql = " ".join(
        [
            f"{select} FROM ledger_entry e WHERE e.idx > ? AND e.idx < ?",
            *conditions,
            "ORDER BY e.idx LIMIT ?",
        ]
    )
    after = -1
    while True:
        rows = list(await db.fetch(sql, *select_args, after, size, *args, BATCH))
        if rows:
            yield rows
        if len(rows) < BATCH:
            return
        after = int(rows[-1][0])


async def _proven(
    tiles: TileStore, batches: AsyncIterator[list[Sequence[Any]]], size: int
) -> AsyncIterator[EvidenceEntry]:
    """Each row with its inclusion proof in the tree of ``size`` (one tile read a batch)."""
    async for rows in batches:
        plans = [inclusion_proof_nodes(int(row[0]), size) for row in rows]
        nodes = list(dict.fromkeys(node for plan in plans for group in plan for node in group))
        read = await tiles.reader(nodes)
        for row, plan in zip(rows, plans, strict=True):
            opening = row[3] if len(row) > 3 else None
            yield EvidenceEntry(
                int(row[0]),
                bytes(row[1]),
                bytes(row[2]),
                tuple(read_plan(plan, read)),
                bytes(opening) if opening is not None else None,
            )


def readable(index: int, leaf: bytes) -> dict[str, Any]:
    """An entry's fields a person reads, under the names of COLUMNS.

    Absent optional fields are None (lists are empty); ``leaf_hash`` is the base64 RFC
    9162 leaf hash of the exact entry bytes, as in the bundle.
    """
    entry = decode_entry(leaf)
    return {
        "index": index,
        "time": entry.time,
        "type": entry.type,
        "organisation": entry.actor_org,
        "system": entry.actor_system,
        "purpose": entry.purpose,
        "basis_kind": entry.basis.kind,
        "basis_ref": entry.basis.ref,
        "categories": list(entry.categories),
        "query_id": entry.query_id,
        "case_id": entry.case_id,
        "bulk_job_id": entry.bulk_job_id,
        "hidden_until": entry.hidden_until,
        "hidden_reason": entry.hidden_reason,
        "recipient": entry.recipient_org,
        "sources": list(entry.source_orgs),
        "reasons": list(entry.reasons),
        "leaf_hash": b64(leaf_hash(leaf)),
    }


def _csv_row(record: dict[str, Any]) -> list[str]:
    # Lists are joined with ";". Codes and times start with a letter or digit, so no
    # spreadsheet reads them as formulas; a base64 leaf hash may start with "+" or "/",
    # which a spreadsheet may show as an error, but it has no "(" to call anything.
    row = []
    for name in COLUMNS:
        value = record[name]
        row.append(
            ";".join(value) if isinstance(value, list) else "" if value is None else str(value)
        )
    return row


def _csv(rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def _json_line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _date(raw: str | None, message: str) -> date | None:
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(message) from None
