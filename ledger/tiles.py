"""C2SP tlog-tiles: tile coordinates, paths, and entry bundles (tile height 8).

How tiles relate to tree nodes (``ledger.merkle`` coordinates, level 0 = leaf hashes):
the tile at tile level ``L`` and index ``N`` is the run of tree nodes at tree level
``8 * L`` with indices ``N * 256`` to ``N * 256 + W - 1``, concatenated as 32-byte hashes
(``W`` is 256 for a full tile). At tile level 0 these are leaf hashes; at tile level 1
each hash is the root of a full level-0 tile, and so on. A node at a tree level between
two tile levels (``8 * L + r`` with ``0 < r < 8``) is not stored: it is the perfect
subtree root of ``2**r`` consecutive hashes in the tile at level ``L``
(see ``tile_for_node``).

Tiles at the right edge of a tree are partial (``W < 256``) and are never hashed into
the level above. An entry bundle ``tile/entries/N`` holds the entries whose leaf hashes
form the level-0 tile ``N``, with the same width.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import TileError
from ledger.merkle import HASH_SIZE, subtree_levels

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes in a full tile
MAX_TILE_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF  # an entry bundle's big-endian uint16 length prefix

_LEVEL = r"0|[1-9][0-9]*"
_INDEX = r"(?:x[0-9]{3}/)*[0-9]{3}"
_WIDTH = r"[1-9][0-9]*"
_PATH = re.compile(
    rf"tile/(?P<level>{_LEVEL}|entries)/(?P<index>{_INDEX})(?:\.p/(?P<width>{_WIDTH}))?"
)


@dataclass(frozen=True)
class TileRef:
    """One tile or entry bundle: its level, index within the level, and width in hashes.

    ``width`` is 256 for a full tile and 1..255 for a partial one. Entry bundles have
    ``is_entries`` set and level 0. Raises TileError for coordinates the spec does not
    allow.
    """

    level: int
    index: int
    width: int = TILE_WIDTH
    is_entries: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_TILE_LEVEL:
            raise TileError(f"tile level {self.level} is not in 0..{MAX_TILE_LEVEL}")
        if self.is_entries and self.level != 0:
            raise TileError("entry bundles have no level other than 0")
        if self.index < 0:
            raise TileError(f"negative tile index {self.index}")
        if not 1 <= self.width <= TILE_WIDTH:
            raise TileError(f"tile width {self.width} is not in 1..{TILE_WIDTH}")

    @property
    def is_partial(self) -> bool:
        """Whether the tile holds fewer than 256 hashes (or entries)."""
        return self.width < TILE_WIDTH

    def path(self) -> str:
        """Return the tile's path under the log prefix, e.g. ``tile/1/x001/234.p/17``."""
        level = "entries" if self.is_entries else str(self.level)
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{level}/{encode_index(self.index)}{suffix}"


def encode_index(index: int) -> str:
    """Encode a tile index as 3-digit path elements, all but the last prefixed with "x".

    For example 1234067 becomes ``x001/x234/067``. Raises TileError for a negative index.
    """
    if index < 0:
        raise TileError(f"negative tile index {index}")
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join([*(f"x{group}" for group in groups[:-1]), groups[-1]])


def parse_tile_path(path: str) -> TileRef:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` into a TileRef.

    Strict: no leading zeros in the level or width, 3-digit index elements, no redundant
    leading ``x000`` elements (so each tile has exactly one path), level 0..63, width
    1..255. Raises TileError for anything else.
    """
    if len(path) > 100:  # no tile of a 2**64-leaf tree has a longer path
        raise TileError("tile path is too long")
    match = _PATH.fullmatch(path)
    if match is None:
        raise TileError(f"not a tile path: {path!r}")
    groups = match["index"].replace("x", "").split("/")
    if len(groups) > 1 and groups[0] == "000":
        raise TileError(f"tile index in {path!r} has a redundant leading element")
    width = TILE_WIDTH
    if match["width"]:
        width = int(match["width"])
        if width >= TILE_WIDTH:
            raise TileError(f"partial tile width in {path!r} is not in 1..{TILE_WIDTH - 1}")
    is_entries = match["level"] == "entries"
    level = 0 if is_entries else int(match["level"])
    return TileRef(level, int("".join(groups)), width, is_entries)


def tile_width(level: int, index: int, size: int) -> int:
    """Return the width of tile ``(level, index)`` in a tree of ``size`` leaves.

    Raises TileError when the tile does not exist (is empty) at that size.
    """
    nodes = size >> (TILE_HEIGHT * level)  # complete nodes at tree level 8 * level
    width = min(TILE_WIDTH, nodes - index * TILE_WIDTH)
    if width <= 0:
        raise TileError(f"tile {level}/{index} is empty in a tree of size {size}")
    return width


def changed_tiles(old_size: int, new_size: int) -> list[TileRef]:
    """Return the hash tiles of tree ``new_size`` that tree ``old_size`` lacks or has narrower.

    These are what a log writes after growing from ``old_size`` to ``new_size``: at each
    level, the tiles from the one ``old_size`` left partial up to the new right edge.
    The entry bundles to write are the level-0 ones with ``is_entries`` set. Raises
    TileError unless ``0 <= old_size <= new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise TileError(f"cannot grow a tree from size {old_size} to size {new_size}")
    tiles = []
    level = 0
    while new_size >> (TILE_HEIGHT * level):
        old_nodes = old_size >> (TILE_HEIGHT * level)
        new_nodes = new_size >> (TILE_HEIGHT * level)
        for index in range(old_nodes // TILE_WIDTH, (new_nodes - 1) // TILE_WIDTH + 1):
            width = tile_width(level, index, new_size)
            if index * TILE_WIDTH + width > old_nodes:
                tiles.append(TileRef(level, index, width))
        level += 1
    return tiles


def tiles_for_size(size: int) -> list[TileRef]:
    """Return every hash tile (full and partial) of a tree of ``size`` leaves."""
    return changed_tiles(0, size)


def tile_for_node(level: int, index: int, size: int) -> tuple[TileRef, int, int]:
    """Locate tree node ``(level, index)`` of a tree of ``size`` leaves in a hash tile.

    Returns ``(tile, start, end)``: the node is the perfect subtree root of the tile's
    hashes ``[start, end)`` (one hash when ``level`` is a multiple of 8); the tile has
    the width it has at ``size``. Raises TileError when the node is not complete in a
    tree of that size.
    """
    if level < 0 or index < 0 or (index + 1) << level > size:
        raise TileError(f"node ({level}, {index}) is not in a tree of size {size}")
    tile_level, rest = divmod(level, TILE_HEIGHT)
    first = index << rest  # the node's first hash at tree level 8 * tile_level
    tile_index, start = divmod(first, TILE_WIDTH)
    tile = TileRef(tile_level, tile_index, tile_width(tile_level, tile_index, size))
    return tile, start, start + (1 << rest)


def tile_hashes(data: bytes) -> list[bytes]:
    """Split a hash tile's bytes into its 32-byte hashes.

    Raises TileError unless the data is 1 to 256 whole hashes.
    """
    count, extra = divmod(len(data), HASH_SIZE)
    if extra or not 1 <= count <= TILE_WIDTH:
        raise TileError(f"a tile of {len(data)} bytes is not 1 to {TILE_WIDTH} hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def node_hash_from_tile(data: bytes, start: int, end: int) -> bytes:
    """Return the hash of the node whose tile hashes are ``[start, end)`` (see tile_for_node).

    Only those hashes are read. Raises TileError when the data is not 1 to 256 whole
    hashes or the range is not a power-of-two run inside the tile.
    """
    count, extra = divmod(len(data), HASH_SIZE)
    if extra or not 1 <= count <= TILE_WIDTH:
        raise TileError(f"a tile of {len(data)} bytes is not 1 to {TILE_WIDTH} hashes")
    span = end - start
    if not 0 <= start < end <= count or span & (span - 1) or start % span:
        raise TileError(f"hashes [{start}, {end}) are not one node of this tile")
    return subtree_levels(data[start * HASH_SIZE : end * HASH_SIZE])[-1]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """Encode entries as an entry bundle: each prefixed by its big-endian uint16 length.

    Raises TileError for an empty bundle, more than 256 entries, or an entry over
    65535 bytes.
    """
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise TileError(f"an entry bundle holds 1 to {TILE_WIDTH} entries, not {len(entries)}")
    parts = []
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise TileError(f"entry of {len(entry)} bytes exceeds {MAX_ENTRY_SIZE} bytes")
        parts.append(len(entry).to_bytes(2, "big") + entry)
    return b"".join(parts)


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """Decode an entry bundle into its entries.

    When ``width`` is given the bundle must hold exactly that many entries. Raises
    TileError for a truncated bundle, an empty one, or more than 256 entries.
    """
    entries = []
    position = 0
    while position < len(data):
        if position + 2 > len(data):
            raise TileError("entry bundle ends inside a length prefix")
        length = int.from_bytes(data[position : position + 2], "big")
        position += 2
        if position + length > len(data):
            raise TileError("entry bundle ends inside an entry")
        entries.append(data[position : position + length])
        position += length
        if len(entries) > TILE_WIDTH:
            raise TileError(f"entry bundle holds more than {TILE_WIDTH} entries")
    if not entries:
        raise TileError("entry bundle is empty")
    if width is not None and len(entries) != width:
        raise TileError(f"entry bundle holds {len(entries)} entries, expected {width}")
    return entries
