"""Shared helpers for the state-tree tests (this module holds no tests of its own).

* :func:`reference_root`: the state root computed from scratch, written directly from the
  rules in ``crypto.smt_proof``'s docstring with none of the state tree's code.
* :data:`KEY_POOL`: state keys to draw from, including families whose SHA-256 paths share
  long prefixes (mined once at import, deterministically), so that random states exercise
  chains of one-child internal nodes, leaves pushed down several levels, and lifts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import cache

from crypto.smt_proof import EMPTY_ROOT, internal_node, key_path, leaf_node, nibble, node_hash


def reference_root(state: Mapping[bytes, bytes]) -> bytes:
    """Root of the canonical tree over ``state``, built from scratch (no incremental logic)."""

    def subtree(leaves: list[tuple[bytes, bytes]], depth: int) -> bytes:
        if len(leaves) == 1:
            return node_hash(leaves[0][1])
        groups: dict[int, list[tuple[bytes, bytes]]] = {}
        for path, leaf in leaves:
            groups.setdefault(nibble(path, depth), []).append((path, leaf))
        bitmap = 0
        children = []
        for nib in range(16):
            if nib in groups:
                bitmap |= 1 << nib
                children.append(subtree(groups[nib], depth + 1))
        return node_hash(internal_node(bitmap, children))

    if not state:
        return EMPTY_ROOT
    leaves = sorted((key_path(k), leaf_node(key_path(k), v)) for k, v in state.items())
    return subtree(leaves, 0)


def _mine(prefix_hex: str, count: int, exclude_hex: str | None = None) -> list[bytes]:
    """``count`` keys ``b"m" + n`` whose SHA-256 hex starts with ``prefix_hex``."""
    found: list[bytes] = []
    n = 0
    while len(found) < count:
        key = b"m" + n.to_bytes(4, "big")
        digest = hashlib.sha256(key).hexdigest()
        if digest.startswith(prefix_hex) and not (exclude_hex and digest.startswith(exclude_hex)):
            found.append(key)
        n += 1
    return found


@cache
def mined_keys() -> tuple[bytes, ...]:
    """Keys whose paths share 4, 3 and 2 leading nibbles (families of a few keys each)."""
    deep = _mine("7c3a", 4)  # ~65k hashes per key
    mid = _mine("7c3", 3, exclude_hex="7c3a")
    shallow = _mine("7c", 3, exclude_hex="7c3")
    return tuple(deep + mid + shallow)


#: Short keys (dense, many collisions of random draws) plus the mined families.
KEY_POOL: tuple[bytes, ...] = tuple(bytes([i]) for i in range(40)) + mined_keys()
