"""The tree's stored hashes: C2SP tlog-tiles of height 8 in the ``ledger_tile`` table.

A level-``k`` tile holds the hashes of tree level ``8k``; every other node a proof needs
is hashed up from the tile below it (at most 128 hashes). Full tiles never change, so
they are cached in memory; a partial tile grows in place as the tree grows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from ledger.database import LedgerDatabase, Transaction
from ledger.errors import LedgerError
from ledger.merkle import HASH_SIZE, HashReader, NodeHash, NodeId
from ledger.tiles import TILE_HEIGHT, TILE_WIDTH, node_hash_from_tile

TileKey = tuple[int, int]  # (tile level, tile number)
FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE


def tile_of_node(level: int, index: int) -> tuple[TileKey, int, int]:
    """The tile holding node ``(level, index)`` and the node's hash range ``[start, end)``."""
    tile_level, rest = divmod(level, TILE_HEIGHT)
    first = index << rest
    number, start = divmod(first, TILE_WIDTH)
    return (tile_level, number), start, start + (1 << rest)


def right_edge_tiles(size: int) -> list[TileKey]:
    """The partial tiles of a tree of ``size`` leaves: the ones appends will extend."""
    keys = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        nodes = size >> (TILE_HEIGHT * level)
        if nodes % TILE_WIDTH:
            keys.append((level, nodes // TILE_WIDTH))
        level += 1
    return keys


class TileStore:
    """Reads node hashes from stored tiles, with an LRU cache of full tiles."""

    def __init__(self, db: LedgerDatabase, cache_tiles: int = 4096) -> None:
        self.db = db
        self._cache: OrderedDict[TileKey, bytes] = OrderedDict()
        self._cache_tiles = cache_tiles

    async def read_tiles(
        self, keys: Iterable[TileKey], tx: Transaction | None = None
    ) -> dict[TileKey, bytes]:
        """The stored bytes of each tile in ``keys`` that exists (one query for the misses)."""
        found: dict[TileKey, bytes] = {}
        missing: list[TileKey] = []
        for key in dict.fromkeys(keys):
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                found[key] = cached
            else:
                missing.append(key)
        if missing:
            where = " OR ".join("(level = ? AND number = ?)" for _ in missing)
            args = [v for key in missing for v in key]
            sql = f"SELECT level, number, hashes FROM ledger_tile WHERE {where}"  # noqa: S608
            rows = await (tx.fetch(sql, *args) if tx else self.db.fetch(sql, *args))
            for level, number, hashes in rows:
                data = bytes(hashes)
                found[(level, number)] = data
                if len(data) == FULL_TILE_BYTES:
                    self._remember((level, number), data)
        return found

    def _remember(self, key: TileKey, data: bytes) -> None:
        self._cache[key] = data
        if len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)

    async def reader(self, nodes: Sequence[NodeId], tx: Transaction | None = None) -> HashReader:
        """Fetch the tiles holding ``nodes`` and return a HashReader over them.

        Raises LedgerError (from the reader) when a node's tile is missing or too short:
        the stored tiles do not match the log.
        """
        placed = {node: tile_of_node(*node) for node in nodes}
        tiles = await self.read_tiles((key for key, _, _ in placed.values()), tx)

        def read(wanted: Sequence[NodeId]) -> list[bytes]:
            out = []
            for node in wanted:
                key, start, end = placed.get(node) or tile_of_node(*node)
                data = tiles.get(key)
                if data is None or len(data) < end * HASH_SIZE:
                    raise LedgerError(f"tile {key} does not hold node {node}")
                if end - start == 1:
                    out.append(data[start * HASH_SIZE : end * HASH_SIZE])
                else:
                    out.append(node_hash_from_tile(data[: end * HASH_SIZE], start, end))
            return out

        return read


def grow_tiles(edge: dict[TileKey, bytes], completed: Iterable[NodeHash]) -> dict[TileKey, bytes]:
    """Add newly completed nodes to the right-edge tiles; return every tile that changed.

    ``edge`` maps the current partial tiles to their bytes and is updated in place
    (tiles that became full are dropped from it). Nodes at levels that are not
    multiples of 8 are not stored.
    """
    changed: dict[TileKey, bytes] = {}
    for node in completed:
        tile_level, rest = divmod(node.level, TILE_HEIGHT)
        if rest:
            continue
        number, position = divmod(node.index, TILE_WIDTH)
        key = (tile_level, number)
        data = edge.get(key, b"")
        if len(data) != position * HASH_SIZE:
            raise LedgerError(f"tile {key} has {len(data) // HASH_SIZE} hashes, not {position}")
        data += node.hash
        changed[key] = data
        if len(data) == FULL_TILE_BYTES:
            edge.pop(key, None)
        else:
            edge[key] = data
    return changed
