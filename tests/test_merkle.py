"""RFC 6962 Merkle trees: published Certificate Transparency vectors and properties.

The constants below are the known-answer data of the Certificate Transparency reference
implementation (google/certificate-transparency cpp/merkletree/merkle_tree_test.cc, repeated
in transparency-dev/merkle proof/verify_test.go): the eight reference leaves, the tree head
for every size 0..8, and the audit paths published for a few (index, size) pairs. Every
other path is checked against a reference written directly from RFC 6962 section 2.1.1,
which is itself first checked against every published hash.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.merkle import inclusion_proof, leaf_hash, merkle_root, node_hash, verify_inclusion

# --- published vectors ----------------------------------------------------------------------

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

EMPTY_ROOT = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

#: ROOTS[n] is the tree head of the first n reference leaves.
ROOTS = [EMPTY_ROOT] + [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]

#: Published audit paths as (0-based leaf index, tree size, path leaf-side first).
#: (The CT sources number leaves from 1: these are their (1,1), (1,8), (6,8), (3,3), (2,5).)
PUBLISHED_PATHS: list[tuple[int, int, list[str]]] = [
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

#: Subtree hashes MTH(LEAVES[lo:hi]) named by the published paths and consistency proofs
#: ((6, 8) and (6, 7) in the same sources add MTH(D[4:6]) and MTH(D[6:7])).
PUBLISHED_SUBTREES: dict[tuple[int, int], str] = {
    (0, 1): "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    (1, 2): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (4, 5): "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    (6, 7): "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    (0, 2): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    (2, 4): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    (4, 6): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    (6, 8): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (0, 4): "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    (4, 8): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
}

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- an independent reference, straight from the RFC text -----------------------------------


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(data: list[bytes]) -> bytes:
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _k(len(data))
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_ranges(m: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """The leaf ranges [a, b) whose subtree hashes form the audit path of leaf m."""
    if hi - lo == 1:
        return []
    k = _k(hi - lo)
    if m < lo + k:
        return [*ref_ranges(m, lo, lo + k), (lo + k, hi)]
    return [*ref_ranges(m, lo + k, hi), (lo, lo + k)]


def ref_path(m: int, data: list[bytes]) -> list[bytes]:
    return [ref_mth(data[a:b]) for a, b in ref_ranges(m, 0, len(data))]


# --- roots --------------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert merkle_root([]) == EMPTY_ROOT
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_root_matches_published_tree_head(size: int) -> None:
    assert merkle_root(LEAVES[:size]) == ROOTS[size]


def test_leaf_and_node_hashes_use_the_rfc_prefixes() -> None:
    assert leaf_hash(b"") == ROOTS[1] == hashlib.sha256(b"\x00").digest()
    assert node_hash(leaf_hash(LEAVES[0]), leaf_hash(LEAVES[1])) == ROOTS[2]
    # Domain separation: a leaf whose data is two child hashes does not hash to their node.
    assert leaf_hash(leaf_hash(LEAVES[0]) + leaf_hash(LEAVES[1])) != ROOTS[2]


def test_root_accepts_any_sequence_and_does_not_mutate_it() -> None:
    leaves = tuple(LEAVES)
    assert merkle_root(leaves) == ROOTS[8]
    assert leaves == tuple(LEAVES)


def test_split_is_largest_power_of_two_not_the_midpoint() -> None:
    # For 5 leaves RFC 6962 splits 4 + 1; a midpoint split (3 + 2) gives another root.
    data = LEAVES[:5]
    midpoint = node_hash(ref_mth(data[:3]), ref_mth(data[3:]))
    assert merkle_root(data) == ROOTS[5] != midpoint


# --- the reference itself agrees with every published hash ---------------------------------


@pytest.mark.parametrize(("lo", "hi"), sorted(PUBLISHED_SUBTREES))
def test_reference_reproduces_published_subtree(lo: int, hi: int) -> None:
    assert ref_mth(LEAVES[lo:hi]).hex() == PUBLISHED_SUBTREES[(lo, hi)]


def test_reference_reproduces_published_roots_and_paths() -> None:
    for size in range(len(ROOTS)):
        assert ref_mth(LEAVES[:size]) == ROOTS[size]
    for index, size, path in PUBLISHED_PATHS:
        assert [p.hex() for p in ref_path(index, LEAVES[:size])] == path


# --- inclusion proofs ------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "path"), PUBLISHED_PATHS)
def test_inclusion_proof_matches_published_path(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(LEAVES[:size], index)
    assert [p.hex() for p in proof] == path
    assert verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])


@pytest.mark.parametrize("size", range(1, 9))
def test_every_index_of_every_reference_tree(size: int) -> None:
    data = LEAVES[:size]
    for index in range(size):
        proof = inclusion_proof(data, index)
        assert proof == ref_path(index, data)
        assert all(len(p) == 32 for p in proof)
        assert verify_inclusion(data[index], index, size, proof, ROOTS[size])
        # Where the published data names a sibling's subtree hash, the proof carries it.
        for p, span in zip(proof, ref_ranges(index, 0, size), strict=True):
            if span in PUBLISHED_SUBTREES:
                assert p.hex() == PUBLISHED_SUBTREES[span]


def _corruptions(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]]:
    """The CT verifier's probe set: each must be rejected."""
    probes: list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]] = [
        ("index - 1", (leaf, index - 1, size, proof, root)),
        ("index + 1", (leaf, index + 1, size, proof, root)),
        ("index ^ 2", (leaf, index ^ 2, size, proof, root)),
        ("size * 2", (leaf, index, size * 2, proof, root)),
        ("size // 2", (leaf, index, size // 2, proof, root)),
        ("wrong leaf", (b"WrongLeaf", index, size, proof, root)),
        ("empty-tree root", (leaf, index, size, proof, EMPTY_ROOT)),
        ("random root", (leaf, index, size, proof, SOME_HASH)),
        ("trailing garbage", (leaf, index, size, [*proof, b""], root)),
        ("trailing root", (leaf, index, size, [*proof, root], root)),
        ("preceding garbage", (leaf, index, size, [b"", *proof], root)),
        ("preceding root", (leaf, index, size, [root, *proof], root)),
    ]
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        probes.append((f"proof[{i}] bit flipped", (leaf, index, size, flipped, root)))
        replaced = [*proof]
        replaced[i] = EMPTY_ROOT
        probes.append((f"proof[{i}] replaced", (leaf, index, size, replaced, root)))
        short = [*proof]
        short[i] = proof[i][:31]
        probes.append((f"proof[{i}] truncated to 31 bytes", (leaf, index, size, short, root)))
    if proof:
        probes.append(("removed last component", (leaf, index, size, proof[:-1], root)))
    if len(proof) > 1:
        probes.append(
            ("inserted component", (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root))
        )
    return probes


@pytest.mark.parametrize(("index", "size", "path"), PUBLISHED_PATHS)
def test_corrupted_published_proofs_are_rejected(index: int, size: int, path: list[str]) -> None:
    proof = [bytes.fromhex(p) for p in path]
    leaf = LEAVES[index]
    assert verify_inclusion(leaf, index, size, proof, ROOTS[size])
    accepted = [
        name
        for name, args in _corruptions(index, size, proof, ROOTS[size], leaf)
        if verify_inclusion(*args)
    ]
    assert accepted == []


def test_verify_rejects_impossible_positions() -> None:
    leaf = LEAVES[0]
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1), (8, 8), (-1, 8)]:
        assert not verify_inclusion(leaf, index, size, [], ROOTS[1])
        assert not verify_inclusion(leaf, index, size, [], EMPTY_ROOT)


def test_single_leaf_tree() -> None:
    data = [b"data"]
    root = merkle_root(data)
    assert root == leaf_hash(b"data")
    assert inclusion_proof(data, 0) == []
    assert verify_inclusion(b"data", 0, 1, [], root)
    assert not verify_inclusion(b"other", 0, 1, [], root)
    assert not verify_inclusion(b"data", 0, 1, [], b"")
    assert not verify_inclusion(b"data", 0, 1, [root], root)


@pytest.mark.parametrize(("size", "index"), [(0, 0), (1, 1), (8, 8), (8, -1), (3, 100)])
def test_inclusion_proof_index_out_of_range(size: int, index: int) -> None:
    with pytest.raises(IndexError, match="out of range"):
        inclusion_proof(LEAVES[:size], index)


def test_wrong_index_and_size_rejected_exhaustively_for_small_trees() -> None:
    for size in range(1, 34):
        data = [i.to_bytes(2, "big") for i in range(size)]
        root = merkle_root(data)
        assert root == ref_mth(data)
        for index in range(size):
            proof = inclusion_proof(data, index)
            assert verify_inclusion(data[index], index, size, proof, root)
            for other in range(size):
                if other != index:
                    assert not verify_inclusion(data[index], other, size, proof, root)
                    assert not verify_inclusion(data[other], index, size, proof, root)
            assert not verify_inclusion(data[index], index, size * 2, proof, root)
            assert not verify_inclusion(data[index], index, size // 2, proof, root)


# --- properties ------------------------------------------------------------------------------

leaf_lists = st.lists(st.binary(max_size=12), min_size=1, max_size=40, unique=True)


@settings(max_examples=60, deadline=None)
@given(leaf_lists)
def test_property_root_matches_reference_and_every_proof_verifies(data: list[bytes]) -> None:
    root = merkle_root(data)
    assert root == ref_mth(data)
    for index, leaf in enumerate(data):
        proof = inclusion_proof(data, index)
        assert proof == ref_path(index, data)
        assert verify_inclusion(leaf, index, len(data), proof, root)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_property_any_single_mutation_fails(data: list[bytes], draw: st.DataObject) -> None:
    size = len(data)
    root = merkle_root(data)
    index = draw.draw(st.integers(0, size - 1), label="index")
    leaf = data[index]
    proof = inclusion_proof(data, index)
    assert verify_inclusion(leaf, index, size, proof, root)

    kinds = ["leaf", "root", "size", "append"]
    if size > 1:
        kinds += ["index", "bit", "drop"]
    kind = draw.draw(st.sampled_from(kinds), label="mutation")
    args: tuple[bytes, int, int, list[bytes], bytes]
    if kind == "leaf":
        other = draw.draw(st.binary(max_size=12).filter(lambda b: b != leaf), label="leaf")
        args = (other, index, size, proof, root)
    elif kind == "root":
        byte = draw.draw(st.integers(0, 31), label="byte")
        bit = draw.draw(st.integers(0, 7), label="bit")
        bad_root = bytearray(root)
        bad_root[byte] ^= 1 << bit
        args = (leaf, index, size, proof, bytes(bad_root))
    elif kind == "size":
        args = (leaf, index, draw.draw(st.sampled_from([0, size * 2, size // 2])), proof, root)
    elif kind == "append":
        extra = draw.draw(st.binary(min_size=32, max_size=32), label="extra")
        args = (leaf, index, size, [*proof, extra], root)
    elif kind == "index":
        other_index = draw.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        args = (leaf, other_index, size, proof, root)
    elif kind == "bit":
        at = draw.draw(st.integers(0, len(proof) - 1), label="element")
        byte = draw.draw(st.integers(0, 31), label="byte")
        bit = draw.draw(st.integers(0, 7), label="bit")
        sibling = bytearray(proof[at])
        sibling[byte] ^= 1 << bit
        args = (leaf, index, size, [*proof[:at], bytes(sibling), *proof[at + 1 :]], root)
    else:  # drop
        at = draw.draw(st.integers(0, len(proof) - 1), label="element")
        args = (leaf, index, size, proof[:at] + proof[at + 1 :], root)
    assert not verify_inclusion(*args)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64, 100])
def test_merkle_levels_give_the_rfc_6962_audit_paths(size: int) -> None:
    """The levels a node keeps per block give the same paths as computing them from the
    leaves each time (RFC 6962 section 2.1.1), and they verify."""
    from crypto.merkle import (
        MerkleLevels,
        inclusion_proof,
        leaf_hash,
        merkle_root,
        verify_inclusion,
    )

    leaves = [i.to_bytes(4, "big") * 3 for i in range(size)]
    tree = MerkleLevels([leaf_hash(d) for d in leaves])
    assert tree.root == merkle_root(leaves) and tree.size == size
    for i in range(size):
        path = tree.audit_path(i)
        assert path == inclusion_proof(leaves, i)
        assert verify_inclusion(leaves[i], i, size, path, tree.root)
    with pytest.raises(IndexError):
        tree.audit_path(size)
