"""Exceptions raised by the ledger core.

Every error the pure ledger code raises is a LedgerError, so the HTTP edge can map the
whole family in one place; the subclasses say which part of the ledger refused.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class for every error raised by the ledger."""


class ProofError(LedgerError):
    """An inclusion or consistency proof is invalid, or was asked for with bad arguments."""


class NoteError(LedgerError):
    """A signed note is malformed, carries a bad signature, or no trusted key signed it."""


class CheckpointError(LedgerError):
    """A checkpoint body is malformed, or it is not the checkpoint that was expected."""


class EntryError(LedgerError):
    """A ledger entry is invalid, not canonically encoded, or too large."""


class TileError(LedgerError):
    """A tile path, tile or entry bundle is malformed or does not exist for a tree size."""
