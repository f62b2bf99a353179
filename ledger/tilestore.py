"""The tree's stored hashes: C2SP tlog-tiles of height 8 in the ``ledger_tile`` table.

A level-``k`` tile holds the hashes of tree level ``8k``; every other node a proof needs
is hashed up from the tile below it (at most 128 hashes). Tiles only grow (a database
trigger refuses anything else), so a tile's hashes as seen once stay a prefix of the
stored tile: the store caches tiles, full and partial, with every inner node hashed up
from them, and asks the database only for a tile it lacks or holds too short.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from ledger.database import LedgerDatabase, Transaction
from ledger.errors import LedgerError
from ledger.merkle import HASH_SIZE, HashReader, NodeHash, NodeId, subtree_levels, tree_nodes
from ledger.tiles import TILE_HEIGHT, TILE_WIDTH

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


def tiles_query(keys: Sequence[TileKey]) -> tuple[str, list[int]]:
    """The SELECT of the stored tiles among ``keys`` (level, number, hashes), and its
    arguments. ``keys`` must not be empty."""
    where = " OR ".join("(level = ? AND number = ?)" for _ in keys)
    args = [v for key in keys for v in key]
    return f"SELECT level, number, hashes FROM ledger_tile WHERE {where}", args  # noqa: S608


def carry_on_tiles(size: int) -> list[TileKey]:
    """The tiles from which appends carry on from a stored tree of ``size``: those that
    hold its frontier (tree_nodes) and its partial right-edge tiles."""
    keys = {tile_of_node(*node)[0] for node in tree_nodes(size)}
    keys.update(right_edge_tiles(size))
    return sorted(keys)


def frontier_from_tiles(size: int, tiles: Mapping[TileKey, bytes]) -> list[bytes]:
    """The hashes of tree_nodes(size), read from ``tiles`` (see carry_on_tiles).

    Raises LedgerError when a tile is missing or too short to hold its node.
    """
    parsed: dict[TileKey, _Tile] = {}
    out = []
    for node in tree_nodes(size):
        key, start, end = tile_of_node(*node)
        tile = parsed.get(key)
        if tile is None and key in tiles:
            tile = parsed[key] = _Tile(tiles[key])
        value = tile.node(start, end) if tile is not None else None
        if value is None:
            raise LedgerError(f"tile {key} does not hold node {node}")
        out.append(value)
    return out


class _Tile:
    """A tile's hashes as far as seen, and the inner nodes above them once needed."""

    __slots__ = ("_levels", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._levels: list[bytes] | None = None

    def node(self, start: int, end: int) -> bytes | None:
        """The node over hashes ``[start, end)`` (an aligned power-of-two run), or None
        when the tile is not known that far."""
        if end * HASH_SIZE > len(self.data):
            return None
        span = end - start
        if span == 1:
            return self.data[start * HASH_SIZE : end * HASH_SIZE]
        if self._levels is None:
            self._levels = subtree_levels(self.data)
        level = span.bit_length() - 1
        offset = (start >> level) * HASH_SIZE
        return self._levels[level][offset : offset + HASH_SIZE]


class TileStore:
    """Reads node hashes from stored tiles, with an LRU cache of tiles and inner nodes."""

    def __init__(self, db: LedgerDatabase, cache_tiles: int = 4096) -> None:
        self.db = db
        self._cache: OrderedDict[TileKey, _Tile] = OrderedDict()
        self._cache_tiles = cache_tiles

    async def read_tiles(
        self, keys: Iterable[TileKey], tx: Transaction | None = None
    ) -> dict[TileKey, bytes]:
        """The stored bytes of each tile in ``keys`` that exists.

        Full tiles may come from the cache; partial ones are read from the database (one
        query for all of them), so they are exactly as stored now.
        """
        found: dict[TileKey, bytes] = {}
        missing: list[TileKey] = []
        for key in dict.fromkeys(keys):
            cached = self._cache.get(key)
            if cached is not None and len(cached.data) == FULL_TILE_BYTES:
                self._cache.move_to_end(key)
                found[key] = cached.data
            else:
                missing.append(key)
        if missing:
            found.update(await self._fetch(missing, tx))
        return found

    def remember(self, key: TileKey, data: bytes) -> None:
        """Cache tile ``key`` as just stored with ``data`` (kept only if longer than the
        copy already cached). The sequencer calls this after each commit."""
        self._keep(key, data)

    async def reader(self, nodes: Sequence[NodeId], tx: Transaction | None = None) -> HashReader:
        """Fetch the tiles holding ``nodes`` that the cache lacks and return a HashReader.

        Raises LedgerError (from the reader) when a node's tile is missing or too short:
        the stored tiles do not match the log.
        """
        placed = {node: tile_of_node(*node) for node in nodes}
        reach: dict[TileKey, int] = {}  # how many hashes of each tile the nodes need
        for key, _, end in placed.values():
            reach[key] = max(reach.get(key, 0), end)
        tiles: dict[TileKey, _Tile] = {}
        short: list[TileKey] = []
        for key, end in reach.items():
            cached = self._cache.get(key)
            if cached is not None and end * HASH_SIZE <= len(cached.data):
                self._cache.move_to_end(key)
                tiles[key] = cached
            else:
                short.append(key)
        if short:
            for key, data in (await self._fetch(short, tx)).items():
                cached = self._cache.get(key)
                kept = cached is not None and cached.data.startswith(data)
                tiles[key] = cached if kept and cached is not None else _Tile(data)

        def read(wanted: Sequence[NodeId]) -> list[bytes]:
            out = []
            for node in wanted:
                key, start, end = placed.get(node) or tile_of_node(*node)
                tile = tiles.get(key) or self._cache.get(key)
                value = tile.node(start, end) if tile is not None else None
                if value is None:
                    raise LedgerError(f"tile {key} does not hold node {node}")
                out.append(value)
            return out

        return read

    async def _fetch(self, keys: Sequence[TileKey], tx: Transaction | None) -> dict[TileKey, bytes]:
        """The stored tiles among ``keys``, exactly as stored; the cache keeps them too."""
        sql, args = tiles_query(keys)
        rows = await (tx.fetch(sql, *args) if tx else self.db.fetch(sql, *args))
        stored = {(level, number): bytes(hashes) for level, number, hashes in rows}
        for key, data in stored.items():
            self._keep(key, data)
        return stored

    def _keep(self, key: TileKey, data: bytes) -> None:
        cached = self._cache.get(key)
        if cached is None or len(data) > len(cached.data):
            self._cache[key] = _Tile(data)
        self._cache.move_to_end(key)
        if len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)


def grow_tiles(edge: dict[TileKey, bytes], completed: Iterable[NodeHash]) -> dict[TileKey, bytes]:
    """Add newly completed nodes to the right-edge tiles; return every tile that changed.

    ``edge`` maps the current partial tiles to their bytes and is updated in place
    (tiles that became full are dropped from it). Nodes at levels that are not
    multiples of 8 are not stored. Raises LedgerError when a node is not the next hash
    of its tile.
    """
    grown: dict[TileKey, list[bytes]] = {}  # each changed tile: its old bytes, then hashes
    counts: dict[TileKey, int] = {}
    for node in completed:
        tile_level, rest = divmod(node.level, TILE_HEIGHT)
        if rest:
            continue
        number, position = divmod(node.index, TILE_WIDTH)
        key = (tile_level, number)
        parts = grown.get(key)
        if parts is None:
            old = edge.get(key, b"")
            parts = grown[key] = [old]
            counts[key] = len(old) // HASH_SIZE
        if counts[key] != position:
            raise LedgerError(f"tile {key} has {counts[key]} hashes, not {position}")
        parts.append(node.hash)
        counts[key] = position + 1
    changed: dict[TileKey, bytes] = {}
    for key, parts in grown.items():
        data = changed[key] = b"".join(parts)
        if len(data) == FULL_TILE_BYTES:
            edge.pop(key, None)
        else:
            edge[key] = data
    return changed
