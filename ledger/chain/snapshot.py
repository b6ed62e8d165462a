"""State snapshots as chunks of the state tree, each verifiable on its own (state sync).

Theory of operation. The state tree (``ledger.chain.state_tree``) is a 16-ary sparse
Merkle tree over ``sha256(key)`` paths. A *chunk* is everything under one path prefix of
``d`` nibbles (1 <= d <= :data:`MAX_CHUNK_DEPTH`): the (key, value) pairs whose paths start
with the prefix, plus its *proof*: the internal nodes from the root down along the prefix
(``ancestors``) and, when the walk ends early at a leaf off the prefix, that leaf
(``terminal``). A client holding a certified state root checks a chunk alone
(:func:`verify_chunk`): the ancestors hash up to the root, and the subtree rebuilt from the
entries hashes to what the last ancestor holds at the prefix's slot. Collision resistance
then makes the entries exactly the keys under the prefix at that root — no more, no fewer,
no other values — so chunks for prefixes that cover every path give the whole state.

The server keeps, per snapshot, the flat (path, key, value) rows and the nodes of the top
:data:`MAX_CHUNK_DEPTH` levels (``ledger.chain.store_snapshot``); :func:`prove_chunk` walks
those. Nothing here does I/O.

Never: accept an entry whose path is outside the prefix, an unsorted or repeated path, or a
chunk whose rebuilt subtree is not the one the proof names; iterate a set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from crypto.encoding import (
    DecodeError,
    as_bytes,
    as_int,
    as_list,
    decode,
    encode_record,
    record_fields,
)
from crypto.smt_proof import (
    EMPTY_ROOT,
    HASH_SIZE,
    INTERNAL_HEADER_SIZE,
    INTERNAL_KIND,
    LEAF_KIND,
    LEAF_NODE_SIZE,
    LEAF_TAG,
    node_hash,
)
from ledger.chain.state_tree_build import Entry, build, nibbles_of

#: Deepest chunk prefix (16**3 = 4096 chunks): snapshots keep the nodes above this depth.
MAX_CHUNK_DEPTH: Final = 3
#: Most entries a server puts in one chunk; a larger subtree is refused (``too_large``)
#: and the client asks for its 16 children instead.
MAX_CHUNK_ENTRIES: Final = 40_000
#: Largest key and value in a chunk (the VM's storage values are far smaller).
MAX_STATE_KEY_BYTES: Final = 256
MAX_STATE_VALUE_BYTES: Final = 2 * 1024 * 1024
#: A chunk reply's byte cap (the peer link carries messages up to 16 MiB).
MAX_CHUNK_BYTES: Final = 12 * 1024 * 1024
#: The client aims at about this many keys per chunk when it picks the prefix depth.
TARGET_CHUNK_ENTRIES: Final = 4_000

_sha256: Final = hashlib.sha256
_HEADER: Final = INTERNAL_HEADER_SIZE
_H: Final = HASH_SIZE


class SnapshotError(Exception):
    """A chunk that does not prove what it claims (the peer is faulty or lying)."""


@dataclass(frozen=True, slots=True)
class StateChunk:
    """The state under ``prefix`` (nibbles, one per byte) at snapshot ``height``."""

    height: int
    prefix: bytes
    ancestors: tuple[bytes, ...]
    terminal: bytes | None
    entries: tuple[tuple[bytes, bytes], ...]

    def encode(self) -> bytes:
        return encode_record(
            "state-chunk",
            1,
            [
                self.height,
                self.prefix,
                list(self.ancestors),
                self.terminal,
                [[k, v] for k, v in self.entries],
            ],
        )

    @classmethod
    def decode(cls, raw: bytes) -> StateChunk:
        value = decode(raw, max_bytes=MAX_CHUNK_BYTES + 4096)
        height, prefix, ancestors, terminal, entries = record_fields(value, "state-chunk", 1, 5)
        prefix_b = check_prefix(as_bytes(prefix, "prefix", max_size=MAX_CHUNK_DEPTH))
        nodes = tuple(
            as_bytes(n, f"ancestors[{i}]", max_size=_HEADER + 16 * _H)
            for i, n in enumerate(as_list(ancestors, "ancestors", max_len=MAX_CHUNK_DEPTH))
        )
        leaf = None if terminal is None else as_bytes(terminal, "terminal", size=LEAF_NODE_SIZE)
        pairs = []
        for i, item in enumerate(as_list(entries, "entries", max_len=MAX_CHUNK_ENTRIES)):
            pair = as_list(item, f"entries[{i}]", max_len=2)
            if len(pair) != 2:
                raise DecodeError(f"entries[{i}]: expected [key, value]")
            pairs.append(
                (
                    as_bytes(pair[0], f"entries[{i}].key", max_size=MAX_STATE_KEY_BYTES),
                    as_bytes(pair[1], f"entries[{i}].value", max_size=MAX_STATE_VALUE_BYTES),
                )
            )
        return cls(as_int(height, "height"), prefix_b, nodes, leaf, tuple(pairs))


def check_prefix(prefix: bytes) -> bytes:
    """A chunk prefix: 1..MAX_CHUNK_DEPTH nibbles, each a byte 0..15."""
    if not 1 <= len(prefix) <= MAX_CHUNK_DEPTH or any(n > 15 for n in prefix):
        raise DecodeError(f"chunk prefix {prefix.hex()} is not 1..{MAX_CHUNK_DEPTH} nibbles")
    return prefix


def all_prefixes(depth: int) -> list[bytes]:
    """Every prefix of ``depth`` nibbles, in path order."""
    prefixes = [b""]
    for _ in range(depth):
        prefixes = [p + bytes((n,)) for p in prefixes for n in range(16)]
    return prefixes


def children_of(prefix: bytes) -> list[bytes]:
    return [prefix + bytes((n,)) for n in range(16)]


def chunk_depth_for(key_count: int) -> int:
    """The prefix depth giving about TARGET_CHUNK_ENTRIES keys per chunk (at least 1)."""
    depth = 1
    while depth < MAX_CHUNK_DEPTH and key_count > TARGET_CHUNK_ENTRIES * 16**depth:
        depth += 1
    return depth


def path_range(prefix: bytes) -> tuple[bytes, bytes | None]:
    """``[low, high)`` of the 32-byte paths under ``prefix`` (high None: to the end)."""
    shift = 4 * (2 * _H - len(prefix))
    value = 0
    for nib in prefix:
        value = (value << 4) | nib
    low = value << shift
    high = (value + 1) << shift
    return low.to_bytes(_H, "big"), None if high >> (8 * _H) else high.to_bytes(_H, "big")


def _is_internal(node: bytes) -> bool:
    if len(node) < _HEADER + _H or node[0] != INTERNAL_KIND:
        return False
    bitmap = (node[1] << 8) | node[2]
    return bitmap != 0 and len(node) == _HEADER + _H * bitmap.bit_count()


def _is_leaf(node: bytes) -> bool:
    return len(node) == LEAF_NODE_SIZE and node[0] == LEAF_KIND


def _child(node: bytes, nib: int) -> bytes | None:
    """The hash in slot ``nib`` of internal ``node``, or None if empty."""
    bitmap = (node[1] << 8) | node[2]
    bit = 1 << nib
    if not bitmap & bit:
        return None
    start = _HEADER + _H * (bitmap & (bit - 1)).bit_count()
    return node[start : start + _H]


def prove_chunk(
    root: bytes, get_node: Callable[[bytes], bytes | None], prefix: bytes
) -> tuple[tuple[bytes, ...], bytes | None]:
    """``(ancestors, terminal)`` for ``prefix`` in the tree at ``root``.

    ``get_node`` reads a stored node by its storage key (position + hash); only nodes above
    depth ``len(prefix)`` are read. Raises :class:`SnapshotError` if one is missing.
    """

    def read(position: bytes, digest: bytes) -> bytes:
        node = get_node(position + digest)
        if node is None:
            raise SnapshotError(f"snapshot node at {position.hex()} is missing")
        return node

    if root == EMPTY_ROOT:
        return (), None
    node = read(b"", root)
    if _is_leaf(node):
        return (), node
    ancestors = [node]
    for depth in range(len(prefix) - 1):
        digest = _child(node, prefix[depth])
        if digest is None:
            break
        node = read(prefix[: depth + 1], digest)
        if _is_leaf(node):
            return tuple(ancestors), node
        ancestors.append(node)
    return tuple(ancestors), None


def _leaf_entries(entries: Sequence[tuple[bytes, bytes]], prefix: bytes) -> list[Entry]:
    placed: list[Entry] = []
    depth = len(prefix)
    previous = b""
    for key, value in entries:
        path = _sha256(key).digest()
        nibs = nibbles_of(path)
        if nibs[:depth] != prefix:
            raise SnapshotError(f"key {key.hex()} is not under prefix {prefix.hex()}")
        if nibs <= previous:
            raise SnapshotError("chunk entries are not in strictly increasing path order")
        previous = nibs
        placed.append((nibs, LEAF_TAG + path + _sha256(value).digest(), None))
    return placed


def verify_chunk(state_root: bytes, chunk: StateChunk) -> dict[bytes, bytes]:
    """Raise :class:`SnapshotError` unless ``chunk`` holds exactly the state under its
    prefix in the tree whose root is ``state_root``.

    Returns the tree nodes the chunk proves, by storage key: its ancestors, its terminal
    leaf, and the subtree its entries rebuild. The chunks of prefixes covering every path
    prove every node of the tree (shared ancestors repeat), so a syncing node stores the
    tree chunk by chunk, without ever holding the whole state."""
    prefix = chunk.prefix
    depth = len(prefix)
    entries = _leaf_entries(chunk.entries, prefix)
    ancestors = chunk.ancestors
    if len(ancestors) > depth:
        raise SnapshotError("more ancestors than the prefix has nibbles")
    nodes: dict[bytes, bytes] = {}
    # Hash down the ancestors: each is internal and sits in its parent's slot; ``expected``
    # ends as what the last one holds at the prefix's slot (EMPTY_ROOT for an empty slot).
    expected = state_root
    for i, node in enumerate(ancestors):
        if not _is_internal(node):
            raise SnapshotError(f"ancestor {i} is not an internal node")
        if node_hash(node) != expected:
            raise SnapshotError(f"ancestor {i} does not hash to what its parent holds")
        nodes[prefix[:i] + expected] = node
        slot = _child(node, prefix[i])
        if slot is None and i < len(ancestors) - 1:
            raise SnapshotError(f"ancestor {i + 1} sits in an empty slot")
        expected = EMPTY_ROOT if slot is None else slot
    terminal = chunk.terminal
    if terminal is not None:
        # The walk ended at a leaf above the prefix's depth: the chunk is that leaf or nothing.
        if len(ancestors) >= depth or not _is_leaf(terminal) or node_hash(terminal) != expected:
            raise SnapshotError("the terminal leaf does not fit the proof")
        if nibbles_of(terminal[1 : 1 + _H])[:depth] == prefix:
            if len(entries) != 1 or entries[0][1] != terminal:
                raise SnapshotError("the chunk's entry is not the proven leaf")
        elif entries:
            raise SnapshotError("entries under a prefix the proof shows empty")
        nodes[prefix[: len(ancestors)] + expected] = terminal
        return nodes
    if len(ancestors) < depth and expected != EMPTY_ROOT:
        raise SnapshotError("the proof stops above the prefix at a non-empty slot")
    if expected == EMPTY_ROOT:
        if entries:
            raise SnapshotError("entries under a prefix the proof shows empty")
        return nodes
    result = build(entries, 0, len(entries), depth, nodes, [])
    if result is None or result[0] != expected:
        raise SnapshotError(f"the entries under {prefix.hex()} do not rebuild the proven subtree")
    if result[1] is not None:  # a single leaf: it sits at the prefix's own position
        nodes[prefix + expected] = result[1]
    return nodes
