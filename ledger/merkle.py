"""The RFC 9162 Merkle tree: hashing, proofs from stored subtree hashes, verification.

Nodes are named by coordinates ``(level, index)``: the perfect subtree at level ``l`` and
index ``i`` covers leaves ``[i * 2**l, (i + 1) * 2**l)``; level 0 holds the leaf hashes.
Only perfect subtrees are ever stored. Every other hash a proof needs (the hash of a
ragged right edge) is the right-to-left fold of the perfect subtrees that cover its
range, so storage only has to answer "hash of node (level, index)".

Proof generation is split in two: ``*_nodes`` functions compute, without any hashes,
which nodes a proof needs (a *plan*: one tuple of nodes per proof hash, folded into one
hash); the proof functions then fetch every node of the plan through one call of a
HashReader, so a database can answer in one query, and assemble the proof.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ledger.errors import LedgerError, ProofError

HASH_SIZE = 32

#: MTH({}) of RFC 9162 section 2.1.1: the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: Coordinates of a perfect subtree: (level, index).
NodeId = tuple[int, int]

#: One tuple of nodes per proof hash; a tuple of more than one node is a ragged right
#: edge whose hash is the right-to-left fold of its nodes (see ``fold``).
ProofPlan = list[tuple[NodeId, ...]]

#: Storage's answer to "the hashes of these nodes", in the order asked.
HashReader = Callable[[Sequence[NodeId]], Sequence[bytes]]


@dataclass(frozen=True, slots=True)
class NodeHash:
    """The hash of the perfect subtree at (level, index)."""

    level: int
    index: int
    hash: bytes


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def fold(hashes: Sequence[bytes]) -> bytes:
    """Fold the hashes of adjacent perfect subtrees, largest first, right to left.

    This is how RFC 9162's MTH joins the perfect subtrees of a range whose size is not a
    power of two: the last two are hashed together first. Raises ProofError when
    ``hashes`` is empty.
    """
    if not hashes:
        raise ProofError("nothing to fold")
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH over ``leaf_hashes`` (RFC 9162 section 2.1.1), holding them all.

    Meant for tests and small trees; a stored log uses ``tree_root`` instead.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    # Pairing neighbours level by level and carrying an odd last hash up unchanged gives
    # the same tree as RFC 9162's split at the largest power of two below n.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def subtree_levels(hashes: bytes) -> list[bytes]:
    """Return the node hashes of every level over adjacent nodes, as concatenated bytes.

    ``hashes`` is adjacent 32-byte node hashes, the first one starting a subtree of
    their level (as a tile's hashes do). Level 0 of the answer is ``hashes`` itself;
    level ``r`` holds, in order, the hash of each complete run of ``2**r`` of them; it
    stops at the first level with fewer than two hashes. For ``2**k`` hashes the last
    level is their subtree's root. Raises ProofError unless ``hashes`` is whole hashes.
    """
    if len(hashes) % HASH_SIZE:
        raise ProofError(f"{len(hashes)} bytes are not whole {HASH_SIZE}-byte hashes")
    interior = hashlib.sha256(b"\x01")  # copied per node: the prefix is hashed once
    levels = [hashes]
    level = hashes
    pair = 2 * HASH_SIZE
    while len(level) >= pair:
        view = memoryview(level)  # slices without copying
        parents = []
        for i in range(0, len(level) - pair + 1, pair):
            node = interior.copy()
            node.update(view[i : i + pair])
            parents.append(node.digest())
        level = b"".join(parents)
        levels.append(level)
    return levels


def range_nodes(start: int, end: int) -> tuple[NodeId, ...]:
    """Return the perfect subtrees covering leaves ``[start, end)``, largest first.

    They are the binary decomposition of ``end - start`` laid out from ``start``; their
    fold is MTH(D[start:end]). Raises ProofError unless ``0 <= start < end`` and
    ``start`` is aligned to the largest of them, which holds for every subtree of an RFC
    9162 tree (and for ``start == 0``).
    """
    if not 0 <= start < end:
        raise ProofError(f"empty or negative range [{start}, {end})")
    nodes: list[NodeId] = []
    position = start
    for level in range((end - start).bit_length() - 1, -1, -1):
        width = 1 << level
        if (end - start) & width:
            if position % width:
                raise ProofError(f"range [{start}, {end}) is not a subtree of the tree")
            nodes.append((level, position >> level))
            position += width
    return tuple(nodes)


def tree_nodes(size: int) -> tuple[NodeId, ...]:
    """Return the perfect subtrees whose fold is the root of a tree of ``size`` leaves.

    They are also the frontier a TreeBuilder is restored from. Empty for size 0.
    """
    if size < 0:
        raise ProofError(f"negative tree size {size}")
    return range_nodes(0, size) if size else ()


def inclusion_proof_nodes(index: int, size: int) -> ProofPlan:
    """Return the plan of RFC 9162 PATH(index, D[size]) (section 2.1.3.1), leaf first.

    Raises ProofError unless ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    plan: ProofPlan = []
    lo, hi = 0, size
    # Walk from the root down to the leaf, taking the sibling of every step.
    while hi - lo > 1:
        split = lo + _largest_power_of_two_below(hi - lo)
        if index < split:
            plan.append(range_nodes(split, hi))
            hi = split
        else:
            plan.append(range_nodes(lo, split))
            lo = split
    plan.reverse()
    return plan


def consistency_proof_nodes(old_size: int, new_size: int) -> ProofPlan:
    """Return the plan of RFC 9162 PROOF(old_size, D[new_size]) (section 2.1.4.1).

    The proof is empty when ``old_size`` is 0 or equal to ``new_size``: every tree is
    consistent with the empty tree and with itself. Raises ProofError unless
    ``0 <= old_size <= new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    plan: ProofPlan = []
    lo, hi = 0, new_size
    m = old_size  # the old tree's size within [lo, hi), which it always starts
    starts_at_root = True  # SUBPROOF's b flag
    while m != hi - lo:
        split = _largest_power_of_two_below(hi - lo)
        if m <= split:
            plan.append(range_nodes(lo + split, hi))
            hi = lo + split
        else:
            plan.append(range_nodes(lo, lo + split))
            lo += split
            m -= split
            starts_at_root = False
    if not starts_at_root:
        plan.append(range_nodes(lo, hi))
    plan.reverse()
    return plan


def read_plan(plan: ProofPlan, read: HashReader) -> list[bytes]:
    """Fetch every node of ``plan`` with one call of ``read`` and fold it into hashes.

    Raises LedgerError when the reader answers with the wrong number of hashes or with a
    hash that is not 32 bytes.
    """
    wanted = list(dict.fromkeys(node for group in plan for node in group))
    if not wanted:
        return []
    answer = list(read(wanted))
    if len(answer) != len(wanted):
        raise LedgerError(f"hash reader returned {len(answer)} hashes for {len(wanted)} nodes")
    for node, value in zip(wanted, answer, strict=True):
        if len(value) != HASH_SIZE:
            raise LedgerError(f"hash reader returned {len(value)} bytes for node {node}")
    by_node = dict(zip(wanted, answer, strict=True))
    return [fold([by_node[node] for node in group]) for group in plan]


def inclusion_proof(index: int, size: int, read: HashReader) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

    The proof is RFC 9162's inclusion path, the leaf's sibling first. ``read`` is called
    once. Raises ProofError unless ``0 <= index < size``.
    """
    return read_plan(inclusion_proof_nodes(index, size), read)


def consistency_proof(old_size: int, new_size: int, read: HashReader) -> list[bytes]:
    """Return the RFC 9162 consistency proof from tree ``old_size`` to tree ``new_size``.

    ``read`` is called at most once. Raises ProofError unless
    ``0 <= old_size <= new_size``.
    """
    return read_plan(consistency_proof_nodes(old_size, new_size), read)


def tree_root(size: int, read: HashReader) -> bytes:
    """Return the root hash of the tree of ``size`` leaves, reading at most once."""
    nodes = tree_nodes(size)
    if not nodes:
        return EMPTY_ROOT
    return read_plan([nodes], read)[0]


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Return the root that ``proof`` implies for ``leaf_hash`` at ``index`` in ``size``.

    Runs RFC 9162 section 2.1.3.2 up to (not including) the comparison with the root.
    Raises ProofError when the arguments or the proof's shape are invalid.
    """
    _check_hash(leaf_hash, "leaf hash")
    for element in proof:
        _check_hash(element, "proof hash")
    # 1. The leaf must be in the tree.
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    # 2-3.
    fn, sn = index, size - 1
    r = leaf_hash
    # 4.
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # 5. (first half) The proof must reach the root.
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``proof`` proves ``leaf_hash`` at ``index`` in the tree ``(size, root)``.

    RFC 9162 section 2.1.3.2. Returns None on success; raises ProofError otherwise.
    """
    _check_hash(root, "root hash")
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if not hmac.compare_digest(computed, root):
        raise ProofError("inclusion proof does not lead to the root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that ``proof`` proves tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    RFC 9162 section 2.1.4.2 for ``0 < old_size < new_size``. Outside that range, where
    RFC 9162 defines no proof: equal sizes need equal roots and an empty proof; the empty
    tree (whose root must be EMPTY_ROOT) needs an empty proof. Returns None on success;
    raises ProofError otherwise.
    """
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    for element in proof:
        _check_hash(element, "proof hash")
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise ProofError("consistency proof must be empty for these sizes")
        if old_size == 0 and not hmac.compare_digest(old_root, EMPTY_ROOT):
            raise ProofError("old root hash is not the empty tree's root")
        if old_size == new_size and not hmac.compare_digest(old_root, new_root):
            raise ProofError("roots of the same tree size differ")
        return
    # 1.
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    # 2.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3-4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise ProofError("consistency proof is shorter than needed")
    if not hmac.compare_digest(fr, old_root):
        raise ProofError("consistency proof does not lead to the old root hash")
    if not hmac.compare_digest(sr, new_root):
        raise ProofError("consistency proof does not lead to the new root hash")


class TreeBuilder:
    """The right frontier of a growing tree: append leaves in O(log n), root at any size.

    The frontier is the hashes of ``tree_nodes(size)``, the perfect subtrees of the
    size's binary decomposition, largest first. A sequencer restores a builder from the
    stored frontier, appends the new leaves, and persists the perfect-subtree hashes
    each append reports as completed.
    """

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        """Restore a builder at ``size`` from the hashes of ``tree_nodes(size)``.

        Raises ProofError when the frontier does not have one 32-byte hash per node.
        """
        nodes = tree_nodes(size)
        if len(frontier) != len(nodes):
            raise ProofError(f"a tree of size {size} has {len(nodes)} frontier hashes")
        for value in frontier:
            _check_hash(value, "frontier hash")
        self._size = size
        self._frontier: list[NodeHash] = [
            NodeHash(level, index, value)
            for (level, index), value in zip(nodes, frontier, strict=True)
        ]

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    @property
    def frontier(self) -> tuple[NodeHash, ...]:
        """The perfect subtrees of the current size's binary decomposition, largest first."""
        return tuple(self._frontier)

    def root(self) -> bytes:
        """Return the root hash of the tree at the current size."""
        if not self._frontier:
            return EMPTY_ROOT
        return fold([node.hash for node in self._frontier])

    def append(self, leaf_hash: bytes) -> list[NodeHash]:
        """Append one leaf hash; return the perfect subtrees it completed, smallest first.

        The first is always the leaf itself at level 0; each further one is the parent
        completed by the previous. Raises ProofError unless ``leaf_hash`` is 32 bytes.
        """
        _check_hash(leaf_hash, "leaf hash")
        frontier = self._frontier
        size = self._size
        node = NodeHash(0, size, leaf_hash)
        completed = [node]
        # Each trailing 1 bit of the old size is a frontier subtree of the new node's
        # level: its left sibling. Merge them upwards.
        while size & 1:
            left = frontier.pop()
            node = NodeHash(node.level + 1, left.index >> 1, node_hash(left.hash, node.hash))
            completed.append(node)
            size >>= 1
        frontier.append(node)
        self._size += 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[NodeHash]:
        """Append leaf hashes in order; return every perfect subtree they completed."""
        completed: list[NodeHash] = []
        for value in leaf_hashes:
            completed.extend(self.append(value))
        return completed


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162's split: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, not {len(value)}")
