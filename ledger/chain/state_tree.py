"""The authenticated state tree: the state root, batch updates, and state proofs.

Theory of operation. All ledger state (a map of byte keys to byte values, laid out by
``ledger.chain.accounts``) is committed to by one root: a 16-ary sparse Merkle tree over
``sha256(key)`` paths, compressed so that a subtree with a single leaf is that leaf. The
hashing rules, node encodings and the proof verifier live in ``crypto.smt_proof`` (light
clients need them without the ledger); node storage keys and subtree building live in
``ledger.chain.state_tree_build``; readers, pending updates and overlays in
``ledger.chain.state_tree_nodes``. This module walks and updates the tree.

Why 16-ary with flat node hashing (one SHA-256 over an internal node's bitmap and child
hashes), rather than a binary tree or Jellyfish's binary hashing inside each node: at a
million keys a path is about 5 nodes instead of about 20, so an update reads, hashes,
encodes and writes about four times fewer nodes, and in CPython the per-node overhead, not
SHA-256 itself, is the cost (hashing a full 16-child node, ~530 bytes, costs about as much
as hashing 65 bytes plus one extra Python call). The price is proof size: ~15 sibling
hashes per level, about 2.4 KB at a million keys instead of ~0.7 KB, acceptable next to a
block header and its commit certificate.

:meth:`StateTree.apply` takes a whole batch (one block's state delta), sorts it by path,
and walks the tree one level at a time, fetching each level's nodes with one
``get_nodes`` call (one SQL query per level, not one per node); then it rebuilds the
touched internal nodes bottom-up. It never writes: it returns a :class:`TreeUpdate`.

The root is a pure function of the key→value set: the tree shape is canonical (see
``crypto.smt_proof``), nothing here iterates a set or depends on the order of ``changes``,
batch boundaries, Python's hash seed or storage row order.

Never: write to a reader, keep state between calls other than the root and the reader, or
carry on past a missing or malformed node (that raises a :class:`StateTreeError`: the store
is corrupt or the wrong reader was given).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Final, TypeAlias

from crypto.smt_proof import (
    EMPTY_ROOT,
    HASH_SIZE,
    INTERNAL_HEADER_SIZE,
    INTERNAL_KIND,
    INTERNAL_TAG,
    LEAF_KIND,
    LEAF_NODE_SIZE,
    LEAF_TAG,
    NODE_HASH_PREFIX,
    PATH_NIBBLES,
    Proof,
    ProofLevel,
)
from ledger.chain.state_tree_build import (
    BY_PATH,
    NIBBLE_BYTE,
    TO_NIBBLES,
    Entry,
    Result,
    build_inserts,
    merge_leaf,
    nibbles_of,
    place_leaf,
)
from ledger.chain.state_tree_nodes import NodeReader, TreeUpdate

__all__ = [
    "EMPTY_ROOT",
    "CorruptNodeError",
    "MissingNodeError",
    "StateTree",
    "StateTreeError",
    "TreeUpdate",
]

_sha256: Final = hashlib.sha256
_PREFIX: Final = NODE_HASH_PREFIX
#: SHA-256 already fed the node-hash prefix: ``copy()`` then ``update(node)`` saves a
#: concatenation per node on the hot path.
_NODE_HASHER: Final = hashlib.sha256(NODE_HASH_PREFIX)
_PATH_END: Final = 1 + HASH_SIZE
_H: Final = HASH_SIZE
_HEADER: Final = INTERNAL_HEADER_SIZE

#: A subtree to update: (its node's storage key or None if empty, first entry, end entry,
#: the result list to fill, index in it).
_Task: TypeAlias = tuple[bytes | None, int, int, list[Result], int]
#: An internal node whose children are being updated: (storage key, node bytes, bitmap,
#: changed nibbles, their results, the result list to fill, index in it).
_Frame: TypeAlias = tuple[bytes, bytes, int, list[int], list[Result], list[Result], int]


class StateTreeError(Exception):
    """The node store does not hold a sound tree for this root (corruption or a bug)."""


class MissingNodeError(StateTreeError):
    """A node the tree references is not in the reader."""


class CorruptNodeError(StateTreeError):
    """A stored node is malformed, misplaced or does not match its key."""


def _check_node(node_key: bytes, node: bytes) -> bytes:
    """Cheap shape check of a fetched node (its hash is only checked by ``check_integrity``)."""
    size = len(node)
    if size == LEAF_NODE_SIZE and node[0] == LEAF_KIND:
        return node
    if size >= _HEADER + _H and node[0] == INTERNAL_KIND:
        bitmap = (node[1] << 8) | node[2]
        if bitmap and size == _HEADER + _H * bitmap.bit_count():
            return node
    raise CorruptNodeError(f"state node {node_key.hex()} is malformed ({size} bytes)")


def _children(node: bytes) -> list[bytes]:
    return [node[i : i + _H] for i in range(_HEADER, len(node), _H)]


class StateTree:
    """The state tree at one root, read through a :class:`NodeReader`.

    Cheap to create; holds no node data. ``StateTree.at(header.state_root, store)`` for a
    committed state, ``StateTree.at(update.new_root, OverlayNodes(store, update))`` on top
    of a pending one.
    """

    __slots__ = ("_nodes", "_root")

    def __init__(self, root: bytes, nodes: NodeReader) -> None:
        if not isinstance(root, bytes) or len(root) != HASH_SIZE:
            raise ValueError(f"a state root is {HASH_SIZE} bytes")
        self._root = root
        self._nodes = nodes

    @classmethod
    def at(cls, root: bytes, nodes: NodeReader) -> StateTree:
        return cls(root, nodes)

    @classmethod
    def empty(cls, nodes: NodeReader) -> StateTree:
        return cls(EMPTY_ROOT, nodes)

    @property
    def root(self) -> bytes:
        return self._root

    @property
    def nodes(self) -> NodeReader:
        return self._nodes

    def _get(self, node_key: bytes) -> bytes:
        node = self._nodes.get_node(node_key)
        if node is None:
            raise MissingNodeError(f"state node {node_key.hex()} is missing")
        return _check_node(node_key, node)

    # ------------------------------------------------------------------ updates

    def apply(self, changes: Mapping[bytes, bytes | None]) -> TreeUpdate:
        """The update that sets each key of ``changes`` to its value (None deletes it).

        Reads nodes, writes none. Setting a key to its current value, or deleting an absent
        key, changes nothing. The result does not depend on the order of ``changes``.
        """
        old_root = self._root
        if not changes:
            return TreeUpdate.create(old_root, old_root, {}, ())
        sha = _sha256
        to_nibbles = TO_NIBBLES
        entries: list[Entry] = []
        append = entries.append
        for key, value in changes.items():
            path = sha(key).digest()
            nibs = path.hex().encode("ascii").translate(to_nibbles)
            if value is None:
                append((nibs, None, None))
            else:
                append((nibs, LEAF_TAG + path + sha(value).digest(), None))
        entries.sort(key=BY_PATH)
        writes: dict[bytes, bytes] = {}
        stale: list[bytes] = []
        top: list[Result] = [None]
        if old_root == EMPTY_ROOT:
            top[0] = build_inserts(entries, 0, len(entries), 0, writes, stale)
        else:
            frames_by_depth = self._descend(old_root, entries, top, writes, stale)
            for depth in range(len(frames_by_depth) - 1, -1, -1):
                self._rebuild(frames_by_depth[depth], depth, writes, stale)
        result = top[0]
        if result is None:
            return TreeUpdate.create(old_root, EMPTY_ROOT, writes, tuple(stale))
        if result[1] is not None:  # a one-leaf tree: the leaf is the root
            place_leaf(result, b"", writes, stale)
        return TreeUpdate.create(old_root, result[0], writes, tuple(stale))

    def _descend(
        self,
        root: bytes,
        entries: list[Entry],
        top: list[Result],
        writes: dict[bytes, bytes],
        stale: list[bytes],
    ) -> list[list[_Frame]]:
        """Walk down level by level; settle leaves and empty slots, return the internal nodes.

        Each level's nodes are fetched with one ``get_nodes`` call. A task is a subtree to
        update (its old node, or None, and its slice of ``entries``); a frame is an
        internal node whose children are being updated, rebuilt later by ``_rebuild``.
        """
        node_hasher = _NODE_HASHER.copy
        frames_by_depth: list[list[_Frame]] = []
        tasks: list[_Task] = [(root, 0, len(entries), top, 0)]
        wanted = [root]
        depth = 0
        while tasks:
            fetched = self._nodes.get_nodes(wanted) if wanted else {}
            child_depth = depth + 1
            too_deep = depth >= PATH_NIBBLES
            frames: list[_Frame] = []
            next_tasks: list[_Task] = []
            add_task = next_tasks.append
            wanted = []
            want = wanted.append
            results: list[Result]
            for old_key, lo, hi, out, index in tasks:
                if old_key is None:
                    out[index] = build_inserts(entries, lo, hi, depth, writes, stale)
                    continue
                node = fetched.get(old_key)
                if node is None:
                    raise MissingNodeError(f"state node {old_key.hex()} is missing")
                size = len(node)
                if size == LEAF_NODE_SIZE and node[0] == LEAF_KIND:
                    if hi - lo == 1:  # the common case: one change meets one leaf
                        nibs, new_leaf, _ = entries[lo]
                        if (
                            new_leaf[1:_PATH_END] == node[1:_PATH_END]
                            if new_leaf is not None
                            else nibs == nibbles_of(node[1:_PATH_END])
                        ):
                            if new_leaf == node:
                                out[index] = (old_key[-_H:], node, old_key)
                            elif new_leaf is None:
                                stale.append(old_key)
                                out[index] = None
                            else:
                                stale.append(old_key)
                                hasher = node_hasher()
                                hasher.update(new_leaf)
                                out[index] = (hasher.digest(), new_leaf, None)
                            continue
                        if new_leaf is None:  # deleting a key that is not there
                            out[index] = (old_key[-_H:], node, old_key)
                            continue
                    out[index] = merge_leaf(old_key, node, entries, lo, hi, depth, writes, stale)
                    continue
                bitmap = int.from_bytes(node[1:_HEADER], "big")
                if (
                    size != _HEADER + _H * bitmap.bit_count()
                    or not bitmap
                    or node[0] != INTERNAL_KIND
                    or too_deep
                ):
                    raise CorruptNodeError(f"state node {old_key.hex()} is malformed")
                if hi - lo == 1:  # one change passes through: no grouping needed
                    nibs = entries[lo][0]
                    nib = nibs[depth]
                    bit = 1 << nib
                    results = [None]
                    if bitmap & bit:
                        start = _HEADER + _H * (bitmap & (bit - 1)).bit_count()
                        child_key = nibs[:child_depth] + node[start : start + _H]
                        want(child_key)
                        add_task((child_key, lo, hi, results, 0))
                    else:
                        add_task((None, lo, hi, results, 0))
                    frames.append((old_key, node, bitmap, [nib], results, out, index))
                    continue
                nibbles: list[int] = []
                results = []
                i = lo
                while i < hi:
                    nibs = entries[i][0]
                    nib = nibs[depth]
                    j = i + 1
                    while j < hi and entries[j][0][depth] == nib:
                        j += 1
                    bit = 1 << nib
                    if bitmap & bit:
                        start = _HEADER + _H * (bitmap & (bit - 1)).bit_count()
                        child_key = nibs[:child_depth] + node[start : start + _H]
                        want(child_key)
                        add_task((child_key, i, j, results, len(nibbles)))
                    else:
                        add_task((None, i, j, results, len(nibbles)))
                    nibbles.append(nib)
                    results.append(None)
                    i = j
                frames.append((old_key, node, bitmap, nibbles, results, out, index))
            frames_by_depth.append(frames)
            tasks = next_tasks
            depth += 1
        return frames_by_depth

    def _rebuild(
        self, frames: list[_Frame], depth: int, writes: dict[bytes, bytes], stale: list[bytes]
    ) -> None:
        """Recompute one level's internal nodes from their updated children (bottom-up)."""
        node_hasher = _NODE_HASHER.copy
        for old_key, node, bitmap, nibbles, results, out, index in frames:
            if len(nibbles) == 1:  # the common case below the top levels: splice one child
                result = results[0]
                bit = 1 << nibbles[0]
                start = _HEADER + _H * (bitmap & (bit - 1)).bit_count()
                if bitmap & bit:
                    if result is None:
                        new_bitmap = bitmap ^ bit
                        body = node[_HEADER:start] + node[start + _H :]
                    elif result[0] == node[start : start + _H]:
                        out[index] = (old_key[-_H:], None, None)
                        continue
                    elif result[1] is not None and not bitmap & (bitmap - 1):
                        new_bitmap = bitmap  # a lone child became a leaf: lifted below
                        body = result[0]
                    else:  # the same children, one hash replaced: the header stays
                        stale.append(old_key)
                        at = old_key[:-_H]
                        leaf = result[1]
                        if leaf is not None:  # place the leaf (inlined place_leaf)
                            leaf_key = at + NIBBLE_BYTE[nibbles[0]] + result[0]
                            if result[2] != leaf_key:
                                writes[leaf_key] = leaf
                                if result[2] is not None:
                                    stale.append(result[2])
                        new_node = node[:start] + result[0] + node[start + _H :]
                        hasher = node_hasher()
                        hasher.update(new_node)
                        new_hash = hasher.digest()
                        writes[at + new_hash] = new_node
                        out[index] = (new_hash, None, None)
                        continue
                elif result is None:
                    out[index] = (old_key[-_H:], None, None)
                    continue
                else:
                    new_bitmap = bitmap | bit
                    body = node[_HEADER:start] + result[0] + node[start:]
            else:
                # Several children change: edit from the highest nibble down, so that each
                # offset computed from the old bitmap stays valid.
                body = node[_HEADER:]
                new_bitmap = bitmap
                for k in range(len(nibbles) - 1, -1, -1):
                    bit = 1 << nibbles[k]
                    result = results[k]
                    start = _H * (bitmap & (bit - 1)).bit_count()
                    if bitmap & bit:
                        if result is None:
                            body = body[:start] + body[start + _H :]
                            new_bitmap ^= bit
                        else:
                            body = body[:start] + result[0] + body[start + _H :]
                    elif result is not None:
                        body = body[:start] + result[0] + body[start:]
                        new_bitmap |= bit
                if new_bitmap == bitmap and body == node[_HEADER:]:
                    out[index] = (old_key[-_H:], None, None)
                    continue
            stale.append(old_key)
            if not new_bitmap:
                out[index] = None
                continue
            at = old_key[:-_H]
            if not new_bitmap & (new_bitmap - 1):
                lone = self._lone_leaf(at, body, new_bitmap, nibbles, results)
                if lone is not None:  # a subtree with one leaf is that leaf: lift it
                    out[index] = lone
                    continue
            for nib, result in zip(nibbles, results, strict=True):
                if result is not None and result[1] is not None:
                    place_leaf(result, at + NIBBLE_BYTE[nib], writes, stale)
            new_node = INTERNAL_TAG + new_bitmap.to_bytes(2, "big") + body
            hasher = node_hasher()
            hasher.update(new_node)
            new_hash = hasher.digest()
            writes[at + new_hash] = new_node
            out[index] = (new_hash, None, None)

    def _lone_leaf(
        self,
        at: bytes,
        child_hash: bytes,
        bitmap: int,
        nibbles: list[int],
        results: list[Result],
    ) -> Result:
        """The only child left under a node, as a result, if it is a leaf; else None."""
        nib = bitmap.bit_length() - 1
        for changed_nib, result in zip(nibbles, results, strict=True):
            if changed_nib == nib and result is not None:
                return result if result[1] is not None else None
        child_key = at + NIBBLE_BYTE[nib] + child_hash
        child = self._get(child_key)
        return (child_hash, child, child_key) if child[0] == LEAF_KIND else None

    # ------------------------------------------------------------------ reads

    def _walk(self, path: bytes) -> tuple[list[ProofLevel], bytes | None]:
        """Follow ``path`` from the root: the internal levels passed, and the leaf ending it."""
        levels: list[ProofLevel] = []
        if self._root == EMPTY_ROOT:
            return levels, None
        node_key = self._root
        nibs = nibbles_of(path)
        for depth in range(PATH_NIBBLES):
            node = self._get(node_key)
            if node[0] == LEAF_KIND:
                return levels, node
            bitmap = (node[1] << 8) | node[2]
            bit = 1 << nibs[depth]
            children = _children(node)
            if not bitmap & bit:
                levels.append(ProofLevel(bitmap, tuple(children)))
                return levels, None
            child = children.pop((bitmap & (bit - 1)).bit_count())
            levels.append(ProofLevel(bitmap, tuple(children)))
            node_key = nibs[: depth + 1] + child
        raise CorruptNodeError(f"state tree under {self._root.hex()} is deeper than a path")

    def prove(self, key: bytes) -> Proof:
        """A membership proof for ``key`` if present, else a non-membership proof."""
        levels, leaf = self._walk(_sha256(key).digest())
        if leaf is None:
            return Proof(tuple(levels), None, None)
        return Proof(tuple(levels), leaf[1:_PATH_END], leaf[_PATH_END:])

    def value_hash(self, key: bytes) -> bytes | None:
        """``sha256(value)`` of ``key``'s value, or None when the key is absent."""
        path = _sha256(key).digest()
        _levels, leaf = self._walk(path)
        if leaf is None or leaf[1:_PATH_END] != path:
            return None
        return leaf[_PATH_END:]

    def _iter_nodes(self) -> Iterator[tuple[bytes, bytes, int, bool]]:
        """(storage key, node, depth, is its parent's only child), depth first."""
        if self._root == EMPTY_ROOT:
            return
        stack: list[tuple[bytes, int, bool]] = [(self._root, 0, False)]
        while stack:
            node_key, depth, lone = stack.pop()
            node = self._get(node_key)
            yield node_key, node, depth, lone
            if node[0] == INTERNAL_KIND:
                if depth >= PATH_NIBBLES:
                    raise CorruptNodeError(f"state node {node_key.hex()} is too deep")
                at = node_key[:-_H]
                bitmap = (node[1] << 8) | node[2]
                only = bitmap.bit_count() == 1
                children = _children(node)
                for nib in range(15, -1, -1):
                    if bitmap >> nib & 1:
                        child_key = at + NIBBLE_BYTE[nib] + children.pop()
                        stack.append((child_key, depth + 1, only))

    def iter_node_keys(self) -> Iterator[bytes]:
        """Every storage key reachable from the root (depth first, in nibble order)."""
        for node_key, _node, _depth, _lone in self._iter_nodes():
            yield node_key

    def iter_leaves(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (path, value hash) in the tree, in path order."""
        for _key, node, _depth, _lone in self._iter_nodes():
            if node[0] == LEAF_KIND:
                yield node[1:_PATH_END], node[_PATH_END:]

    def check_integrity(self) -> int:
        """Re-hash and check every node and where it is stored; return the number of leaves.

        Raises :class:`StateTreeError` naming the first bad node. Costs a full walk.
        """
        leaves = 0
        for node_key, node, depth, lone in self._iter_nodes():
            if _sha256(_PREFIX + node).digest() != node_key[-_H:]:
                raise CorruptNodeError(f"state node {node_key.hex()} does not match its key")
            if node[0] == LEAF_KIND:
                if lone or nibbles_of(node[1:_PATH_END])[:depth] != node_key[:-_H]:
                    raise CorruptNodeError(f"state leaf {node_key.hex()} is misplaced")
                leaves += 1
        return leaves
