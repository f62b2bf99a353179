"""The tile store answers nodes from cached tiles and asks the database only when it must."""

from __future__ import annotations

from typing import Any

from ledger import merkle
from ledger.tilestore import TileStore


class CountingTiles:
    """A stand-in database holding tiles, counting the queries made to it."""

    kind = "sqlite"

    def __init__(self, tiles: dict[tuple[int, int], bytes]) -> None:
        self.tiles = tiles
        self.queries = 0

    async def fetch(self, sql: str, *args: Any) -> list[tuple[int, int, bytes]]:
        self.queries += 1
        keys = list(zip(args[0::2], args[1::2], strict=True))
        return [(*key, self.tiles[key]) for key in keys if key in self.tiles]


LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(600)]


def tile(level_zero_from: int, count: int) -> bytes:
    return b"".join(LEAVES[level_zero_from : level_zero_from + count])


async def test_inner_nodes_of_a_cached_tile_need_no_query() -> None:
    db = CountingTiles({(0, 0): tile(0, 256), (0, 1): tile(256, 256)})
    store = TileStore(db)  # type: ignore[arg-type]
    nodes = [(0, 5), (3, 7), (7, 1), (2, 100)]
    read = await store.reader(nodes)
    assert read(nodes) == [
        LEAVES[5],
        merkle.root_from_leaves(LEAVES[56:64]),
        merkle.root_from_leaves(LEAVES[128:256]),
        merkle.root_from_leaves(LEAVES[400:404]),
    ]
    assert db.queries == 1
    read = await store.reader([(6, 3), (1, 200)])
    assert read([(6, 3), (1, 200)]) == [
        merkle.root_from_leaves(LEAVES[192:256]),
        merkle.root_from_leaves(LEAVES[400:402]),
    ]
    assert db.queries == 1


async def test_a_partial_tile_is_read_again_only_when_too_short() -> None:
    db = CountingTiles({(0, 0): tile(0, 40)})
    store = TileStore(db)  # type: ignore[arg-type]
    store.remember((0, 0), tile(0, 20))
    read = await store.reader([(4, 0), (0, 19)])
    assert read([(4, 0), (0, 19)]) == [merkle.root_from_leaves(LEAVES[:16]), LEAVES[19]]
    assert db.queries == 0
    read = await store.reader([(5, 0), (3, 4)])  # needs 32 and 40 hashes
    assert read([(5, 0), (3, 4)]) == [
        merkle.root_from_leaves(LEAVES[:32]),
        merkle.root_from_leaves(LEAVES[32:40]),
    ]
    assert db.queries == 1
    store.remember((0, 0), tile(0, 10))  # shorter than what is cached: ignored
    assert (await store.reader([(0, 39)]))([(0, 39)]) == [LEAVES[39]]
    assert db.queries == 1


async def test_partial_tiles_are_read_as_stored() -> None:
    db = CountingTiles({(0, 0): tile(0, 256), (0, 1): tile(256, 30)})
    store = TileStore(db)  # type: ignore[arg-type]
    store.remember((0, 1), tile(256, 10))
    assert await store.read_tiles([(0, 0), (0, 1)]) == {(0, 0): tile(0, 256), (0, 1): tile(256, 30)}
    assert await store.read_tiles([(0, 0)]) == {(0, 0): tile(0, 256)}
    assert db.queries == 1
