"""Tests for ledger.tiles: C2SP tlog-tiles paths, tile coverage and entry bundles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle, tiles
from ledger.errors import TileError
from ledger.tiles import TileRef


@pytest.mark.parametrize(
    ("index", "encoded"),
    [
        (1234067, "x001/x234/067"),  # C2SP tlog-tiles
        (123456078, "x123/x456/078"),  # golang.org/x/mod sumdb/tlog tilePaths
        (3057500, "x003/x057/500"),  # golang.org/x/mod sumdb/tlog tilePaths
        (1, "001"),
        (0, "000"),
        (1000, "x001/000"),
    ],
)
def test_encode_index(index: int, encoded: str) -> None:
    assert tiles.encode_index(index) == encoded


@pytest.mark.parametrize(
    ("path", "tile"),
    [
        # golang.org/x/mod sumdb/tlog tilePaths, without Go's tile-height element, which
        # C2SP tlog-tiles fixes at 8 and leaves out of the path.
        ("tile/0/001", TileRef(0, 1)),
        ("tile/0/001.p/5", TileRef(0, 1, 5)),
        ("tile/3/x123/x456/078", TileRef(3, 123456078)),
        ("tile/3/x123/x456/078.p/2", TileRef(3, 123456078, 2)),
        ("tile/1/x003/x057/500", TileRef(1, 3057500)),
        ("tile/63/000", TileRef(63, 0)),
        ("tile/entries/x001/x234/067", TileRef(0, 1234067, is_entries=True)),
        ("tile/entries/x001/x234/067.p/255", TileRef(0, 1234067, 255, is_entries=True)),
    ],
)
def test_tile_paths(path: str, tile: TileRef) -> None:
    assert tiles.parse_tile_path(path) == tile
    assert tile.path() == path


@pytest.mark.parametrize(
    "path",
    [
        "tile/3/123/456/078",  # golang.org/x/mod sumdb/tlog tilePaths: missing "x"
        "tile/3/-1/123/456/078",
        "tile/1/data/x003/x057/500",
        "tile/01/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/0/000.p/05",
        "tile/0/000.p/",
        "tile/0/000.q/5",
        "tile/0/x000/001",
        "tile/0/x000/x001/002",
        "tile/0/01",
        "tile/0/0001",
        "tile/0/x1/001",
        "tile/0/x001",
        "tile/0/001/",
        "tile/0/x001/x002",
        "/tile/0/000",
        "tile/0/000/",
        "tile/0",
        "tile/entries",
        "tile/entries/1/000",
        "tile/0/\u0661\u0662\u0663",
        "tiles/0/000",
    ],
)
def test_bad_tile_paths_are_refused(path: str) -> None:
    with pytest.raises(TileError):
        tiles.parse_tile_path(path)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 63),
    st.integers(0, 10**15),
    st.integers(1, 256),
    st.booleans(),
)
def test_tile_paths_round_trip(level: int, index: int, width: int, is_entries: bool) -> None:
    tile = TileRef(0 if is_entries else level, index, width, is_entries)
    assert tiles.parse_tile_path(tile.path()) == tile


def test_bad_tile_refs_are_refused() -> None:
    for level, index, width in [(64, 0, 256), (-1, 0, 256), (0, -1, 256), (0, 0, 0), (0, 0, 257)]:
        with pytest.raises(TileError):
            TileRef(level, index, width)
    with pytest.raises(TileError):
        TileRef(1, 0, is_entries=True)


def test_tiles_of_the_specification_example() -> None:
    # C2SP tlog-tiles: "a tree of size 70,000 will be represented by 273 full level 0
    # tiles, one partial level 0 tile of width 112, one full level 1 tile, one partial
    # level 1 tile of width 17, and one partial level 2 tile of width 1."
    found = tiles.tiles_for_size(70000)
    assert [t for t in found if t.level == 0 and not t.is_partial] == [
        TileRef(0, n) for n in range(273)
    ]
    assert [t for t in found if t.is_partial or t.level > 0] == [
        TileRef(0, 273, 112),
        TileRef(1, 0),
        TileRef(1, 1, 17),
        TileRef(2, 0, 1),
    ]
    # "Note that a tree of size 256 will be represented by a full level 0 tile and a
    # partial level 1 tile of width 1."
    assert tiles.tiles_for_size(256) == [TileRef(0, 0), TileRef(1, 0, 1)]
    assert tiles.tiles_for_size(0) == []


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200_000), st.integers(0, 200_000))
def test_changed_tiles_are_the_difference(a: int, b: int) -> None:
    old, new = min(a, b), max(a, b)
    expected = set(tiles.tiles_for_size(new)) - set(tiles.tiles_for_size(old))
    assert set(tiles.changed_tiles(old, new)) == expected


def test_changed_tiles_refuses_shrinking() -> None:
    with pytest.raises(TileError):
        tiles.changed_tiles(5, 4)


def test_tile_width() -> None:
    assert tiles.tile_width(0, 273, 70000) == 112
    assert tiles.tile_width(1, 0, 70000) == 256
    assert tiles.tile_width(2, 0, 70000) == 1
    for level, index in [(0, 274), (2, 1), (3, 0)]:
        with pytest.raises(TileError):
            tiles.tile_width(level, index, 70000)


SIZE = 70000


@pytest.fixture(scope="module")
def tree() -> list[list[bytes]]:
    """Every perfect subtree hash of a 70,000-leaf tree, by level, built pairwise."""
    levels = [[merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(SIZE)]]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append(
            [merkle.node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        )
    return levels


def tile_data(levels: list[list[bytes]], tile: TileRef) -> bytes:
    """A tile's contents straight from the spec: hashes (8L, 256N + i), i < W."""
    first = tile.index * tiles.TILE_WIDTH
    return b"".join(levels[tiles.TILE_HEIGHT * tile.level][first : first + tile.width])


def test_every_node_is_found_in_its_tile(tree: list[list[bytes]]) -> None:
    stored = {(t.level, t.index): tile_data(tree, t) for t in tiles.tiles_for_size(SIZE)}
    for level, hashes in enumerate(tree):
        # Every node at the bottom of a tile level and a spread of the others.
        step = 1 if level % tiles.TILE_HEIGHT == 0 else 97
        for index in [*range(0, len(hashes), step), len(hashes) - 1]:
            tile, start, end = tiles.tile_for_node(level, index, SIZE)
            assert tile.width == tiles.tile_width(tile.level, tile.index, SIZE)
            data = stored[(tile.level, tile.index)]
            assert tiles.node_hash_from_tile(data, start, end) == hashes[index]


def test_tile_for_node_known_positions() -> None:
    assert tiles.tile_for_node(0, 0, 1) == (TileRef(0, 0, 1), 0, 1)
    assert tiles.tile_for_node(8, 1, 70000) == (TileRef(1, 0), 1, 2)
    assert tiles.tile_for_node(3, 40, 70000) == (TileRef(0, 1), 64, 72)
    assert tiles.tile_for_node(16, 0, 70000) == (TileRef(2, 0, 1), 0, 1)
    with pytest.raises(TileError):
        tiles.tile_for_node(3, 40, 327)
    with pytest.raises(TileError):
        tiles.tile_for_node(17, 0, 70000)


def test_level_one_tile_hashes_are_roots_of_full_level_zero_tiles(tree: list[list[bytes]]) -> None:
    # C2SP tlog-tiles: MTH(D[(n * 256 + i) * 256**l : (n * 256 + i + 1) * 256**l]).
    level_one = tiles.tile_hashes(tile_data(tree, TileRef(1, 0)))
    for i in (0, 1, 255):
        leaves = tree[0][i * 256 : (i + 1) * 256]
        assert level_one[i] == merkle.root_from_leaves(leaves)


def test_tile_hashes_and_node_ranges_are_checked() -> None:
    with pytest.raises(TileError):
        tiles.tile_hashes(b"")
    with pytest.raises(TileError):
        tiles.tile_hashes(bytes(33))
    with pytest.raises(TileError):
        tiles.tile_hashes(bytes(32 * 257))
    data = bytes(32 * 8)
    for start, end in [(0, 3), (1, 3), (4, 12), (-2, 0), (2, 2)]:
        with pytest.raises(TileError):
            tiles.node_hash_from_tile(data, start, end)


def test_entry_bundles() -> None:
    assert tiles.encode_bundle([b"", b"ab"]) == b"\x00\x00\x00\x02ab"
    entries = [b"x" * n for n in (0, 1, 255, 256, 65535)]
    assert tiles.decode_bundle(tiles.encode_bundle(entries), width=5) == entries
    full = [bytes([i]) for i in range(256)]
    assert tiles.decode_bundle(tiles.encode_bundle(full)) == full


def test_bad_entry_bundles_are_refused() -> None:
    with pytest.raises(TileError):
        tiles.encode_bundle([b"x" * 65536])
    with pytest.raises(TileError):
        tiles.encode_bundle([])
    with pytest.raises(TileError):
        tiles.encode_bundle([b""] * 257)
    for data in [b"", b"\x00", b"\x00\x02a", b"\x00\x00" * 257]:
        with pytest.raises(TileError):
            tiles.decode_bundle(data)
    with pytest.raises(TileError):
        tiles.decode_bundle(b"\x00\x00", width=2)
