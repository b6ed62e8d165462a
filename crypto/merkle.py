"""RFC 6962 (Certificate Transparency) Merkle trees over raw leaf data.

leaf hash = H(0x00 || d), interior node = H(0x01 || left || right), empty tree = H("").
For n > 1 leaves the tree splits at k, the largest power of two smaller than n
(RFC 6962 section 2.1). Proofs are audit paths per section 2.1.1; verification follows
RFC 9162 section 2.1.3.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    # Bottom-up over levels; an odd last node is promoted unchanged, which yields exactly
    # the RFC 6962 left-balanced tree.
    level = list(hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of the leaves (RFC 6962 section 2.1)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _root_of_hashes([leaf_hash(d) for d in leaves])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaf ``index`` (RFC 6962 section 2.1.1), leaf-side first."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf index {index} out of range for a tree of {n} leaves")
    hashes = [leaf_hash(d) for d in leaves]
    proof: list[bytes] = []
    lo, hi, m = 0, n, index
    # Walk from the root down, collecting sibling subtree roots, then reverse.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m - lo < k:
            proof.append(_root_of_hashes(hashes[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(_root_of_hashes(hashes[lo : lo + k]))
            lo = lo + k
    proof.reverse()
    return proof


class MerkleLevels:
    """Every level of one RFC 6962 tree, built once from its leaf hashes, so audit paths
    cost O(log n) each (a node serving many proofs of one block builds it once)."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        if not hashes:
            raise ValueError("a tree to prove inclusion in has at least one leaf")
        levels = [list(hashes)]
        while len(levels[-1]) > 1:
            level = levels[-1]
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            levels.append(nxt)
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def audit_path(self, index: int) -> list[bytes]:
        """The same path as :func:`inclusion_proof` (leaf-side first)."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf index {index} out of range for a tree of {self.size} leaves")
        path: list[bytes] = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):  # a promoted odd last node has no sibling here
                path.append(level[sibling])
            index //= 2
        return path


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check that ``leaf`` is at ``index`` of a tree of ``size`` leaves with this ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if len(p) != 32 or sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
