"""Where state-tree nodes live: the reader contract, pending updates, overlays, caches.

The state tree (``ledger.chain.state_tree``) never writes anything. It reads nodes
through a :class:`NodeReader` and returns a :class:`TreeUpdate`: the nodes to write and the
nodes made stale. Whoever owns the storage (the SQLite block store, or
:class:`MemoryNodeStore` in tests and tools) applies it, in the same transaction as the
block that produced it.

Persistence contract (what the block store does):

* table ``state_nodes(key BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID``;
* :class:`NodeReader`: ``get_node(key)`` and ``get_nodes(keys)`` over that table;
* per block, inside the block's SQLite transaction: ``INSERT OR REPLACE`` every
  ``update.node_writes`` item, ``DELETE`` every key of ``update.stale_nodes``;
* at genesis: ``StateTree.empty(store).apply(genesis_state)``, written the same way; its
  ``new_root`` is the genesis state root. The root to open later is the head header's
  ``state_root`` (``crypto.smt_proof.EMPTY_ROOT`` for an empty state).

Node keys are the node's position in the tree followed by its hash (see
``ledger.chain.state_tree_build``), so a stored node never changes, every cache of nodes
stays valid, and a live node sits at exactly one key. Each update names the nodes it
replaced, and the store deletes them in the same transaction, so the table holds exactly
the latest tree and nothing else (no pruning job, no history: proofs are served against
the latest root only). Because the same node (a leaf set back to an earlier value) can
come back in a later update, deletions must never be deferred or replayed out of order:
apply updates in height order, each one's writes and deletions together.

:class:`OverlayNodes` layers not-yet-committed updates over a reader, so block h+1 can be
executed on top of block h's pending update before h is durable.

Never: mutate a reader from the tree, delete a node from an update other than the one that
made it stale, or hand out a cache entry for a key other than the one asked for.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol

#: Default bound of :class:`NodeCache`: about 60 MB of nodes at ~300 B per node.
DEFAULT_NODE_CACHE_NODES: Final = 200_000


class NodeReader(Protocol):
    """Read access to stored tree nodes: ``node key -> node bytes``.

    ``get_nodes`` must return the present keys only (a missing key is simply absent from
    the result); the tree fetches one level of the tree per call, so a store should answer
    it with one query (``SELECT key, node FROM state_nodes WHERE key IN (...)``, chunked
    under SQLite's bound-parameter limit).
    """

    def get_node(self, node_key: bytes) -> bytes | None: ...

    def get_nodes(self, node_keys: Collection[bytes]) -> Mapping[bytes, bytes]: ...


@dataclass(frozen=True, slots=True)
class TreeUpdate:
    """What one batch of state changes does to the stored tree.

    ``node_writes`` (node key -> node bytes) must be inserted and ``stale_nodes`` deleted,
    in the same transaction as the block; the two never share a key. After that the
    store holds exactly the nodes reachable from ``new_root``.
    """

    old_root: bytes
    new_root: bytes
    node_writes: Mapping[bytes, bytes]
    stale_nodes: tuple[bytes, ...]

    @staticmethod
    def create(
        old_root: bytes, new_root: bytes, writes: dict[bytes, bytes], stale: tuple[bytes, ...]
    ) -> TreeUpdate:
        """Wrap ``writes`` read-only (it is not copied: the caller gives it up)."""
        return TreeUpdate(old_root, new_root, MappingProxyType(writes), stale)

    @property
    def changed(self) -> bool:
        return self.new_root != self.old_root


class MemoryNodeStore:
    """A dict of nodes: the node store of tests, tools and benchmarks."""

    __slots__ = ("_nodes",)

    def __init__(self) -> None:
        self._nodes: dict[bytes, bytes] = {}

    def get_node(self, node_key: bytes) -> bytes | None:
        return self._nodes.get(node_key)

    def get_nodes(self, node_keys: Collection[bytes]) -> Mapping[bytes, bytes]:
        nodes = self._nodes
        try:
            return {key: nodes[key] for key in node_keys}
        except KeyError:  # rare: some are absent
            return {key: nodes[key] for key in node_keys if key in nodes}

    def commit(self, update: TreeUpdate) -> None:
        """Apply ``update`` the way the block store does: its writes, then its deletions."""
        self._nodes.update(update.node_writes)
        for key in update.stale_nodes:
            self._nodes.pop(key, None)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_key: object) -> bool:
        return node_key in self._nodes

    def node_keys(self) -> Iterator[bytes]:
        return iter(self._nodes)


class OverlayNodes:
    """A reader that sees ``base`` as if ``update`` had been committed on top of it.

    Stack them for a chain of pending blocks: ``OverlayNodes(OverlayNodes(store, u_h),
    u_h1)``. Dropping an overlay (a proposal that was not committed) discards its update.
    """

    __slots__ = ("_base", "_stale", "_writes", "update")

    def __init__(self, base: NodeReader, update: TreeUpdate) -> None:
        self._base = base
        self.update = update
        self._writes = update.node_writes
        self._stale = frozenset(update.stale_nodes)

    @property
    def base(self) -> NodeReader:
        return self._base

    def rebase(self, base: NodeReader) -> None:
        """Read through ``base`` from now on (the update below this one was committed into
        ``base``), so a long chain of pipelined blocks does not keep every ancestor alive."""
        self._base = base

    def get_node(self, node_key: bytes) -> bytes | None:
        node = self._writes.get(node_key)
        if node is not None:
            return node
        if node_key in self._stale:
            return None
        return self._base.get_node(node_key)

    def get_nodes(self, node_keys: Collection[bytes]) -> Mapping[bytes, bytes]:
        writes = self._writes
        stale = self._stale
        found: dict[bytes, bytes] = {}
        rest = []
        for key in node_keys:
            node = writes.get(key)
            if node is not None:
                found[key] = node
            elif key not in stale:
                rest.append(key)
        if rest:
            found.update(self._base.get_nodes(rest))
        return found


class NodeCache:
    """A bounded read-through cache in front of a reader (first in, first out).

    Every entry stays valid forever: a node key (position + hash) names one byte string.
    Feed it each committed update with :meth:`remember` so the top of the tree, which
    every block rewrites, is always served from memory. Not thread-safe.
    """

    __slots__ = ("_base", "_cache", "_max_nodes", "hits", "misses")

    def __init__(self, base: NodeReader, max_nodes: int = DEFAULT_NODE_CACHE_NODES) -> None:
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be positive, got {max_nodes}")
        self._base = base
        self._max_nodes = max_nodes
        self._cache: dict[bytes, bytes] = {}
        self.hits = 0
        self.misses = 0

    def _insert(self, node_key: bytes, node: bytes) -> None:
        cache = self._cache
        if len(cache) >= self._max_nodes and node_key not in cache:
            del cache[next(iter(cache))]
        cache[node_key] = node

    def get_node(self, node_key: bytes) -> bytes | None:
        node = self._cache.get(node_key)
        if node is not None:
            self.hits += 1
            return node
        self.misses += 1
        node = self._base.get_node(node_key)
        if node is not None:
            self._insert(node_key, node)
        return node

    def get_nodes(self, node_keys: Collection[bytes]) -> Mapping[bytes, bytes]:
        cache = self._cache
        found: dict[bytes, bytes] = {}
        missing = []
        for key in node_keys:
            node = cache.get(key)
            if node is not None:
                found[key] = node
            else:
                missing.append(key)
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            fetched = self._base.get_nodes(missing)
            for key, node in fetched.items():
                self._insert(key, node)
            found.update(fetched)
        return found

    def remember(self, update: TreeUpdate) -> None:
        """Cache the nodes a committed update wrote (stale ones may stay: they are inert)."""
        for key, node in update.node_writes.items():
            self._insert(key, node)

    def __len__(self) -> int:
        return len(self._cache)
