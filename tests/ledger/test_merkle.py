"""Tests for ledger.merkle: RFC 9162 hashing, proofs from stored nodes, verification."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import LedgerError, ProofError

# The RFC 6962 test leaves used by Certificate Transparency, Trillian and
# transparency-dev/merkle (testonly/constants.go, LeafInputs).
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

# transparency-dev/merkle testonly/constants.go, NodeHashes: [level][index].
NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]

# transparency-dev/merkle testonly/constants.go, RootHashes: by tree size 0..8.
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# transparency-dev/merkle proof/verify_test.go, inclusionProofs, with its 1-based leaf
# numbers turned into 0-based indices: (index, size, proof).
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# transparency-dev/merkle proof/verify_test.go, consistencyProofs: (old, new, proof).
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# transparency-dev/merkle proof/verify_test.go, sha256SomeHash.
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def unhex(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def vector_reader(nodes: Sequence[tuple[int, int]]) -> list[bytes]:
    """A HashReader over the published node hashes of the 8-leaf tree."""
    return [bytes.fromhex(NODE_HASHES[level][index]) for level, index in nodes]


# --- A reference implementation, straight from RFC 9162 section 2.1 -------------------


def ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 section 2.1.1, over leaf hashes."""
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = ref_split(len(leaf_hashes))
    return merkle.node_hash(ref_mth(leaf_hashes[:k]), ref_mth(leaf_hashes[k:]))


def ref_path(m: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1."""
    n = len(leaf_hashes)
    if n == 1:
        return []
    k = ref_split(n)
    if m < k:
        return [*ref_path(m, leaf_hashes[:k]), ref_mth(leaf_hashes[k:])]
    return [*ref_path(m - k, leaf_hashes[k:]), ref_mth(leaf_hashes[:k])]


def ref_subproof(m: int, leaf_hashes: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 section 2.1.4.1."""
    n = len(leaf_hashes)
    if m == n:
        return [] if b else [ref_mth(leaf_hashes)]
    k = ref_split(n)
    if m <= k:
        return [*ref_subproof(m, leaf_hashes[:k], b), ref_mth(leaf_hashes[k:])]
    return [*ref_subproof(m - k, leaf_hashes[k:], False), ref_mth(leaf_hashes[:k])]


class Tree:
    """Leaf hashes of data "leaf <i>" with every perfect subtree hash, as a log stores them."""

    def __init__(self, size: int) -> None:
        self.leaves = [merkle.leaf_hash(f"leaf {i}".encode()) for i in range(size)]
        self.levels = [self.leaves]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(
                [merkle.node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )
        self.reads = 0

    def read(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        self.reads += 1
        return [self.levels[level][index] for level, index in nodes]

    def root(self, size: int) -> bytes:
        return ref_mth(self.leaves[:size])


# --- Known answers ----------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert merkle.EMPTY_ROOT.hex() == ROOTS[0]
    assert merkle.root_from_leaves([]) == merkle.EMPTY_ROOT
    assert merkle.tree_root(0, vector_reader) == merkle.EMPTY_ROOT


def test_leaf_and_node_hashes_match_published_vectors() -> None:
    assert [merkle.leaf_hash(leaf).hex() for leaf in LEAVES] == NODE_HASHES[0]
    for level in range(1, len(NODE_HASHES)):
        below = unhex(NODE_HASHES[level - 1])
        computed = [merkle.node_hash(below[i], below[i + 1]).hex() for i in range(0, len(below), 2)]
        assert computed == NODE_HASHES[level]


@pytest.mark.parametrize("size", range(9))
def test_roots_match_published_vectors(size: int) -> None:
    leaf_hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES[:size]]
    assert merkle.root_from_leaves(leaf_hashes).hex() == ROOTS[size]
    assert merkle.tree_root(size, vector_reader).hex() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_published_vectors(index: int, size: int, proof: list[str]) -> None:
    assert merkle.inclusion_proof(index, size, vector_reader) == unhex(proof)
    leaf = merkle.leaf_hash(LEAVES[index])
    root = bytes.fromhex(ROOTS[size])
    merkle.verify_inclusion(leaf, index, size, unhex(proof), root)
    assert merkle.root_from_inclusion_proof(leaf, index, size, unhex(proof)) == root


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS[1:])
def test_corrupted_published_inclusion_proofs_fail(index: int, size: int, proof: list[str]) -> None:
    # The probes of transparency-dev/merkle's corruptInclusionProof.
    hashes = unhex(proof)
    leaf = merkle.leaf_hash(LEAVES[index])
    root = bytes.fromhex(ROOTS[size])
    probes = [
        (leaf, index - 1, size, hashes, root),
        (leaf, index + 1, size, hashes, root),
        (leaf, index ^ 2, size, hashes, root),
        (leaf, index, size * 2, hashes, root),
        (leaf, index, size // 2, hashes, root),
        (merkle.leaf_hash(b"WrongLeaf"), index, size, hashes, root),
        (leaf, index, size, hashes, merkle.EMPTY_ROOT),
        (leaf, index, size, hashes, SOME_HASH),
        (leaf, index, size, [*hashes, root], root),
        (leaf, index, size, [root, *hashes], root),
        (leaf, index, size, hashes[:-1], root),
        (leaf, index, size, [hashes[0], SOME_HASH, *hashes[1:]], root),
        (leaf, index, size, [*hashes, b""], root),
    ]
    for i in range(len(hashes)):
        flipped = list(hashes)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((leaf, index, size, flipped, root))
    for probe in probes:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*probe)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_published_vectors(old: int, new: int, proof: list[str]) -> None:
    assert merkle.consistency_proof(old, new, vector_reader) == unhex(proof)
    merkle.verify_consistency(
        old, new, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]), unhex(proof)
    )


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS[1:])
def test_corrupted_published_consistency_proofs_fail(old: int, new: int, proof: list[str]) -> None:
    # The probes of transparency-dev/merkle's corruptConsistencyProof.
    hashes = unhex(proof)
    old_root, new_root = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    probes = [
        (old - 1, new, old_root, new_root, hashes),
        (old + 1, new, old_root, new_root, hashes),
        (old ^ 2, new, old_root, new_root, hashes),
        (old, new * 2, old_root, new_root, hashes),
        (old, new // 2, old_root, new_root, hashes),
        (old, new, SOME_HASH, new_root, hashes),
        (old, new, old_root, SOME_HASH, hashes),
        (old, new, new_root, old_root, hashes),
        (old, new, old_root, new_root, []),
        (old, new, old_root, new_root, [*hashes, old_root]),
        (old, new, old_root, new_root, [*hashes, new_root]),
        (old, new, old_root, new_root, [old_root, *hashes]),
        (old, new, old_root, new_root, [new_root, *hashes]),
        (old, new, old_root, new_root, [hashes[0], *hashes]),
        (old, new, old_root, new_root, hashes[:-1]),
    ]
    for i in range(len(hashes)):
        flipped = list(hashes)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((old, new, old_root, new_root, flipped))
    for probe in probes:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*probe)


def test_consistency_edge_cases() -> None:
    # After transparency-dev/merkle's TestVerifyConsistency, with 32-byte stand-in roots;
    # unlike it, the empty tree's root must be EMPTY_ROOT.
    root1, root2 = hashlib.sha256(b"1").digest(), hashlib.sha256(b"2").digest()
    empty = merkle.EMPTY_ROOT
    merkle.verify_consistency(0, 0, empty, empty, [])
    merkle.verify_consistency(0, 1, empty, root2, [])
    merkle.verify_consistency(1, 1, root2, root2, [])
    failing = [
        (0, 0, root1, root2, []),
        (1, 1, root1, root2, []),
        (0, 1, root1, root2, []),  # not the empty tree's root
        (1, 0, root1, root2, []),
        (2, 1, root1, root2, []),
        (1, 2, root1, root2, []),
        (0, 0, empty, root2, []),
        (0, 0, empty, empty, [empty]),
        (0, 1, empty, empty, [empty]),
        (1, 1, empty, empty, [empty]),
        (-1, 1, empty, empty, []),
        (1, 2, root1[:31], root2, [root1]),
    ]
    for probe in failing:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*probe)


def test_inclusion_edge_cases() -> None:
    # After transparency-dev/merkle's TestVerifyInclusion and TestVerifyInclusionSingleEntry.
    single = merkle.leaf_hash(b"data")
    merkle.verify_inclusion(single, 0, 1, [], single)
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(SOME_HASH, index, size, [], merkle.EMPTY_ROOT)
    for leaf, root in [(single, b""), (b"", single), (b"", b"")]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, 0, 1, [], root)


# Responses of Google's Argon 2020 Certificate Transparency log, as stored in
# golang.org/x/mod sumdb/tlog/testdata/argon2020 (sth.json, entries.json, proof.json,
# consistency.json; the old root is from ct_test.go).
ARGON_SIZE = 961984013
ARGON_ROOT = "dwlueapdd7LaOEnX2W2Wp9v2XE+KzejHRQGHwEx0oaM="
ARGON_LEAF = (
    "AAAAAAFelPhqUwAAAAViMIIFXjCCBEagAwIBAgIRAOodHzZdqWIFzYyl/SovhCMwDQYJKoZIhvcNAQELBQAwgZAx"
    "CzAJBgNVBAYTAkdCMRswGQYDVQQIExJHcmVhdGVyIE1hbmNoZXN0ZXIxEDAOBgNVBAcTB1NhbGZvcmQxGjAYBgNV"
    "BAoTEUNPTU9ETyBDQSBMaW1pdGVkMTYwNAYDVQQDEy1DT01PRE8gUlNBIERvbWFpbiBWYWxpZGF0aW9uIFNlY3Vy"
    "ZSBTZXJ2ZXIgQ0EwHhcNMTcwMjE1MDAwMDAwWhcNMjAwNDE2MjM1OTU5WjBfMSEwHwYDVQQLExhEb21haW4gQ29u"
    "dHJvbCBWYWxpZGF0ZWQxHTAbBgNVBAsTFFBvc2l0aXZlU1NMIFdpbGRjYXJkMRswGQYDVQQDDBIqLmxhbmRsb3Jk"
    "cy5jb20uYXUwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQCtPBKKHj4zdrGlCjgTHzb5gx9JCs97DwvB"
    "z60f14gDufF2haWbOxyJ0a3opAMsZnOr8HkARVCwxdqG/PTfACcb0QM7FOlzvxGqxataTYiChwvkkif8F9GlJw69"
    "HuHgzhusPf1Ytfk3ps1PRC14MkyrS4kwPrk/Le4XdkqRpRw62wG4V6IkbzsNMEOl1H8EgUbfyapdOcVxHjIzvBVy"
    "56fBRKG05Fr5wNq3Acak5kYZdNsLhhmlrqAfAjiombW3hb3V5blJdRC0BDdYHv2+zKey6LqJ1FDoXo6IzbzPpC+a"
    "ifZy47YX+/N1U64Qn5xlDg7mOP8JXfkNJHbU1TJZHif5AgMBAAGjggHhMIIB3TAfBgNVHSMEGDAWgBSQr2o6lFoL"
    "2JDqElZz30O0Oija5zAdBgNVHQ4EFgQUNQSLjkoz01I+iuuoC5lgEp0anhcwDgYDVR0PAQH/BAQDAgWgMAwGA1Ud"
    "EwEB/wQCMAAwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCME8GA1UdIARIMEYwOgYLKwYBBAGyMQECAgcw"
    "KzApBggrBgEFBQcCARYdaHR0cHM6Ly9zZWN1cmUuY29tb2RvLmNvbS9DUFMwCAYGZ4EMAQIBMFQGA1UdHwRNMEsw"
    "SaBHoEWGQ2h0dHA6Ly9jcmwuY29tb2RvY2EuY29tL0NPTU9ET1JTQURvbWFpblZhbGlkYXRpb25TZWN1cmVTZXJ2"
    "ZXJDQS5jcmwwgYUGCCsGAQUFBwEBBHkwdzBPBggrBgEFBQcwAoZDaHR0cDovL2NydC5jb21vZG9jYS5jb20vQ09N"
    "T0RPUlNBRG9tYWluVmFsaWRhdGlvblNlY3VyZVNlcnZlckNBLmNydDAkBggrBgEFBQcwAYYYaHR0cDovL29jc3Au"
    "Y29tb2RvY2EuY29tMC8GA1UdEQQoMCaCEioubGFuZGxvcmRzLmNvbS5hdYIQbGFuZGxvcmRzLmNvbS5hdTANBgkq"
    "hkiG9w0BAQsFAAOCAQEACyHqxUzrexToY7tOv4+kyGPP2D27P1tQpyzeAl1bPObiMhNK2b9vvBLDWAaqm8c0YL1h"
    "+DBdLoWzf3xFsIkTCVCjWJTNSNlcYtgRk6or1s7jWsfXzWqsnPjPPmTIOCw7EfH7Yme3oxPs3UUsmShAgPwNohAt"
    "L9GqlqMiKM6v1WU3NHt01jEoNP23LRa6KeNK6AH6WHJykzL223IlhgXjHTeuQj6lR+TNrQXJuhwTXYe+20rrpPQx"
    "c1Pn7AqnvfWgmicRQ7gdIcr4V6+ecTvLfNOaJ0ZYe5G5giuAAdTm7F57pk04f4gyZNYKrj88mvbkoriN8b6jcWEx"
    "trYO6bm2TwAA"
)
ARGON_INCLUSION = (
    "T46AmJsuOM/gFiGlUp+IJJebp+1Z5qratFNW7U0JyOQ= 9Jj1Feodn42uRYEfffkV4HF/EIPFQ5Zo9IwkxbQ2uhk= "
    "D53/1oCNebF4J59HHgioovKZxrmrKcVuCVhy3Izg8Ck= wSFDgGSrsXRPA+1c8WHoAFCsWeUv8NDyP/Q/SgsyVyY= "
    "516/RcwsgdwdzHn18v1dJHqBkgFUbNhmCIWOGjsMJaE= naTFY2ajLFgrgs5XUl+zJYZnnlJksLGsA1VYwpLfqbY= "
    "mKBRJo6qao+0Kdh/rhGkZUbHUAxMhrtrclrTpIbNjIg= Co4ueOFE7lpifLio94irxxsv1wFMMaK3tPu2ZQkHlro= "
    "yRgy800K6JMYCC05sWfqF2kvCg2riT/pVM+nEa6V5+0= n2O38XJZC8/Wpbwi9HhgVizlUyeUHVZvYyQB1607MRc= "
    "go3tAjuNfNSCj87y2Rg1xOroDknGN1eaf3cgvzObf7Q= 8D0Mj3/J7ySSnFb0afIHYXv6rlOhECnsebY6XKi1IR8= "
    "6rcez46ZU8M5vPiWVMAUfJfAOV0pPP/mch/lYzZhj/M= 2rtIeXrPvSdUyHc5maIgSAVB2BzaKaupWxSAiVayDE4= "
    "nniW/IMFQPN5xw8UsHFn7CRStYbm1gLu7NNa6kkRqJQ= mRPPi7sQS22MduIEyvcNzCNFqIt6kLwYPkNKrVtIcu8= "
    "JvTivzESNS9wHI8aph5a7uieVmtS/p9PciMZ5D6GyOo= UTyQd+Ym0wY4zG+qK806bBORwi1CSVvFQ/KknnqoZj8= "
    "hXODrqN+ff+U6zPqRQ+ZQKs6im1fPcxIerDSfNwflhE= II6GE+WY/DrpZzfHztLwkR46o37zVkNLCyPYlf68zA0= "
    "d609kWWcNBllbA8Jb/ad4XAVVGnScLRmtP8FYyr+Dck= rikBsP0G0gioXRpBFED2CzQdSLrGPvRd0bEcbEZw1rI= "
    "GXIElfmnRuWfbA4z7ubV/UwlpSRUbUeec7oL5HDDnh0= pR0SH/NYP6s9+8azWwaeUXA4Ze/3WCIgMfh5YW6wvcE= "
    "f3GuAKYVrF8RBg3s15jvA/YvV9oAliWtzP/imwPhQVA= WHn8zDxlVgkV+lSlmzaOdfSBrTHoRr5nT3d76q0KKWE= "
    "f2uV2ZxVgULzLPKuZcowRY3ZY7fRlX59iDBjV1R8kNQ= NzQVjJsvQwbi7WStMr9oFkh9VbHfK7LB6o7WwAqwNTs= "
    "C0LttBeYHZHgL+032JIcJC3CTBIyza/hsbmJUgJfmDI= nixU5CWTFVDlF4BGdcU6kA7WSYurEpe9jRWc+F/7sOc="
)
ARGON_OLD_SIZE = 3654490
ARGON_OLD_ROOT = "AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ="
ARGON_CONSISTENCY = (
    "80Sfbj6UQEdVSZCSIgh9NMPj3vCBzcc1A48B2crJSWg= FZcrgAHUk6nNPviJZq8kEK6jCG1d18pJOFE45ZDc1TQ= "
    "Q67reWXmPBo1UfmwBap4Xi9PMPfFdUSSw3WGlRZdG7k= eJ7CyhR4PxzBxDIsWgrVYW1eFUb9ndgf46tFmiqVrxA= "
    "QrDwp062Grm5WY8KdrhFsBuuNjGzRox2Jb8PmVL5OYw= XM4YMjMEdLH/XJam/ZWyaP14k3cmsOtnPsOWQ54lW1s= "
    "SGiBh+jOTGccXU48ZzgQ88lRcBmtB4wz4oSDndv2QTg= WAS6txqNLYKGL1GdBdpqmV42TTfn6cJsuDsqLXuTCNI= "
    "QFmRS0rirUA7ZN3lxFjDncV+E1OCrn3NUB4RCp+5fzc= Hdbp7It2XBNZmNDBpCN/KPd7vfVqxgzwOosqVIaEA9E= "
    "mxvHL0ZiblBdD7j7pIa1jlfB0gSqfJ6oX0UGo7L0VsU= q5hjyvoW6TL/PThgcitpDcSTrnKX2p1+aqscqH2euRA= "
    "jTOWDqt3IHj2NVFeezyBz2ofpru+ztEywqKUAfFclKI= GIRn0w3HqJdvU9j1WVD//eR6lk2AaTVjyzjsJNP8U88= "
    "x52GJvxG81fnQBrgOTbll1A5tz95/LXK0Ag1NhB0r1I= 6/0OqrcTgc3o5dD5PymmoC96lB9yLPFuTHVvLy8fSGk= "
    "Gf+iKLfcXO5l4JEFmsZvSdG5q1uEeWPfYLrds6pmjz0= DGuaco+McyM3AfRSF6qX7RwSetwe2ieYJmxw5e9rVx0= "
    "2tQJ9V32hnYp+fdpP6TcjmgJmLeNVOMKM0Ml1kk4cNU= 3PapK+IkyJr8I9yAErAmzuZezzLMzsg+PfeRCgNW8NQ= "
    "s6xiYeejb+wtqHA+URJZ2I/SCPyIW8coP6aB00FJbMY= z9lSpmdTcr5M5ZzKlc4EPh3SrSypKFdk6JUF/UccaZU= "
    "GXIElfmnRuWfbA4z7ubV/UwlpSRUbUeec7oL5HDDnh0= pR0SH/NYP6s9+8azWwaeUXA4Ze/3WCIgMfh5YW6wvcE= "
    "f3GuAKYVrF8RBg3s15jvA/YvV9oAliWtzP/imwPhQVA= WHn8zDxlVgkV+lSlmzaOdfSBrTHoRr5nT3d76q0KKWE= "
    "f2uV2ZxVgULzLPKuZcowRY3ZY7fRlX59iDBjV1R8kNQ= NzQVjJsvQwbi7WStMr9oFkh9VbHfK7LB6o7WwAqwNTs= "
    "C0LttBeYHZHgL+032JIcJC3CTBIyza/hsbmJUgJfmDI= nixU5CWTFVDlF4BGdcU6kA7WSYurEpe9jRWc+F/7sOc="
)


def b64_list(text: str) -> list[bytes]:
    return [base64.b64decode(item) for item in text.split()]


def test_real_certificate_transparency_inclusion_proof() -> None:
    leaf = merkle.leaf_hash(base64.b64decode(ARGON_LEAF))
    root = base64.b64decode(ARGON_ROOT)
    proof = b64_list(ARGON_INCLUSION)
    merkle.verify_inclusion(leaf, 10000, ARGON_SIZE, proof, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, 10001, ARGON_SIZE, proof, root)
    # The plan asks for one stored-node group per proof hash.
    assert len(merkle.inclusion_proof_nodes(10000, ARGON_SIZE)) == len(proof)


def test_real_certificate_transparency_consistency_proof() -> None:
    old_root = base64.b64decode(ARGON_OLD_ROOT)
    new_root = base64.b64decode(ARGON_ROOT)
    proof = b64_list(ARGON_CONSISTENCY)
    merkle.verify_consistency(ARGON_OLD_SIZE, ARGON_SIZE, old_root, new_root, proof)
    with pytest.raises(ProofError):
        merkle.verify_consistency(ARGON_OLD_SIZE + 1, ARGON_SIZE, old_root, new_root, proof)
    assert len(merkle.consistency_proof_nodes(ARGON_OLD_SIZE, ARGON_SIZE)) == len(proof)


# --- Plans, readers and arguments --------------------------------------------------------


def test_range_nodes_is_the_binary_decomposition() -> None:
    assert merkle.range_nodes(0, 7) == ((2, 0), (1, 2), (0, 6))
    assert merkle.range_nodes(8, 13) == ((2, 2), (0, 12))
    assert merkle.tree_nodes(0) == ()
    assert merkle.tree_nodes(6) == ((2, 0), (1, 2))
    for start, end in [(1, 3), (2, 6), (3, 3), (4, 2), (-1, 1)]:
        with pytest.raises(ProofError):
            merkle.range_nodes(start, end)


def test_plans_name_ragged_right_edges_as_several_nodes() -> None:
    # PATH(0, D[7]) = [leaf 1, node(1,1), MTH(D[4:7])] and MTH(D[4:7]) folds (1,2), (0,6).
    assert merkle.inclusion_proof_nodes(0, 7) == [((0, 1),), ((1, 1),), ((1, 2), (0, 6))]
    assert merkle.consistency_proof_nodes(3, 7) == [
        ((0, 2),),
        ((0, 3),),
        ((1, 0),),
        ((1, 2), (0, 6)),
    ]


def test_proofs_read_storage_once() -> None:
    tree = Tree(100)
    merkle.inclusion_proof(37, 100, tree.read)
    merkle.consistency_proof(37, 100, tree.read)
    merkle.tree_root(100, tree.read)
    assert tree.reads == 3
    assert merkle.consistency_proof(100, 100, tree.read) == []
    assert merkle.consistency_proof(0, 100, tree.read) == []
    assert tree.reads == 3


def test_bad_reader_answers_are_refused() -> None:
    with pytest.raises(LedgerError):
        merkle.inclusion_proof(0, 8, lambda nodes: [])
    with pytest.raises(LedgerError):
        merkle.inclusion_proof(0, 8, lambda nodes: [b"short"] * len(nodes))


def test_bad_proof_arguments_are_refused() -> None:
    for index, size in [(0, 0), (5, 5), (-1, 3)]:
        with pytest.raises(ProofError):
            merkle.inclusion_proof_nodes(index, size)
    for old, new in [(5, 4), (-1, 4)]:
        with pytest.raises(ProofError):
            merkle.consistency_proof_nodes(old, new)


# --- Properties against the RFC reference ----------------------------------------------

sizes = st.integers(min_value=1, max_value=300)

# Leaf i is always "leaf <i>", so this tree's prefixes are every smaller tree.
BIG = Tree(301)


@st.composite
def index_in_tree(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    return draw(st.integers(min_value=0, max_value=size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(min_value=2, max_value=300))
    return draw(st.integers(min_value=1, max_value=new - 1)), new


def flip(proof: list[bytes], which: int, position: int) -> list[bytes]:
    changed = list(proof)
    element = bytearray(changed[which])
    element[position] ^= 0x01
    changed[which] = bytes(element)
    return changed


@settings(max_examples=150, deadline=None)
@given(index_in_tree(), st.data())
def test_inclusion_proofs_match_reference_and_verify(
    case: tuple[int, int], data: st.DataObject
) -> None:
    index, size = case
    tree = Tree(size)
    proof = merkle.inclusion_proof(index, size, tree.read)
    assert proof == ref_path(index, tree.leaves)
    root = tree.root(size)
    leaf = tree.leaves[index]
    merkle.verify_inclusion(leaf, index, size, proof, root)

    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        position = data.draw(st.integers(0, merkle.HASH_SIZE - 1))
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, size, flip(proof, which, position), root)
    other_index = data.draw(st.integers(0, size))
    if other_index != index:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, other_index, size, proof, root)
    other_size = data.draw(st.integers(index + 1, len(BIG.leaves)))
    if other_size != size:
        other_root = BIG.root(other_size)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, other_size, proof, other_root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, index, size, proof, merkle.node_hash(root, root))


@settings(max_examples=150, deadline=None)
@given(two_sizes(), st.data())
def test_consistency_proofs_match_reference_and_verify(
    case: tuple[int, int], data: st.DataObject
) -> None:
    old, new = case
    tree = Tree(new)
    proof = merkle.consistency_proof(old, new, tree.read)
    assert proof == ref_subproof(old, tree.leaves, True)
    old_root, new_root = tree.root(old), tree.root(new)
    merkle.verify_consistency(old, new, old_root, new_root, proof)

    which = data.draw(st.integers(0, len(proof) - 1))
    position = data.draw(st.integers(0, merkle.HASH_SIZE - 1))
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, new, old_root, new_root, flip(proof, which, position))
    other_old = data.draw(st.integers(1, new - 1).filter(lambda s: s != old))
    if other_old != old:
        with pytest.raises(ProofError):
            merkle.verify_consistency(other_old, new, tree.root(other_old), new_root, proof)
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, new + 1, old_root, BIG.root(new + 1), proof)
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, new, new_root, old_root, proof)
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, new, old_root, new_root, proof[:-1])


@settings(max_examples=100, deadline=None)
@given(sizes)
def test_tree_root_from_stored_nodes_matches_reference(size: int) -> None:
    tree = Tree(size)
    assert merkle.tree_root(size, tree.read) == ref_mth(tree.leaves)
    assert merkle.root_from_leaves(tree.leaves) == ref_mth(tree.leaves)


# --- TreeBuilder ----------------------------------------------------------------------------


def test_tree_builder_root_matches_every_size() -> None:
    tree = Tree(300)
    builder = merkle.TreeBuilder()
    assert builder.root() == merkle.EMPTY_ROOT
    for size, leaf in enumerate(tree.leaves, start=1):
        completed = builder.append(leaf)
        assert builder.size == size
        assert builder.root() == merkle.root_from_leaves(tree.leaves[:size])
        # Every completed node is a perfect subtree and matches the stored-node table.
        assert completed[0] == merkle.NodeHash(0, size - 1, leaf)
        for node in completed:
            assert (node.index + 1) << node.level == size
            assert node.hash == tree.levels[node.level][node.index]
        assert [(n.level, n.index) for n in builder.frontier] == list(merkle.tree_nodes(size))


def test_tree_builder_known_roots_and_frontier() -> None:
    builder = merkle.TreeBuilder()
    completed = builder.extend(merkle.leaf_hash(leaf) for leaf in LEAVES[:7])
    assert builder.root().hex() == ROOTS[7]
    # transparency-dev/merkle CompactTrees()[7] = {nh[2][0], nh[1][2], nh[0][6]}.
    assert [n.hash.hex() for n in builder.frontier] == [
        NODE_HASHES[2][0],
        NODE_HASHES[1][2],
        NODE_HASHES[0][6],
    ]
    # Seven leaves complete 7 leaves, 3 level-1 and 1 level-2 subtrees.
    assert sorted((n.level, n.index) for n in completed) == sorted(
        [(0, i) for i in range(7)] + [(1, 0), (1, 1), (1, 2), (2, 0)]
    )


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 150), st.integers(0, 150))
def test_tree_builder_restored_from_frontier_continues(size: int, more: int) -> None:
    tree = Tree(size + more)
    first = merkle.TreeBuilder()
    first.extend(tree.leaves[:size])
    stored = [n.hash for n in first.frontier]
    restored = merkle.TreeBuilder(size, stored)
    assert restored.root() == first.root()
    restored.extend(tree.leaves[size:])
    assert restored.root() == ref_mth(tree.leaves)


def test_tree_builder_refuses_bad_frontiers() -> None:
    with pytest.raises(ProofError):
        merkle.TreeBuilder(3, [merkle.EMPTY_ROOT])
    with pytest.raises(ProofError):
        merkle.TreeBuilder(1, [b"short"])
    with pytest.raises(ProofError):
        merkle.TreeBuilder().append(b"short")


@pytest.mark.parametrize("count", [1, 2, 3, 8, 13, 64, 255, 256])
def test_subtree_levels_hold_every_complete_node(count: int) -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(count)]
    levels = merkle.subtree_levels(b"".join(leaves))
    assert levels[0] == b"".join(leaves)
    for level, data in enumerate(levels):
        width = 1 << level
        assert len(data) == (count // width) * 32
        for i in range(count // width):
            node = merkle.root_from_leaves(leaves[i * width : (i + 1) * width])
            assert data[i * 32 : (i + 1) * 32] == node
    assert len(levels) == count.bit_length()
    with pytest.raises(ProofError):
        merkle.subtree_levels(b"x" * 33)
