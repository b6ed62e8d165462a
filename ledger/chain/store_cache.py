"""The block store's in-memory caches: state point reads, and the shared node cache.

Execution reads accounts on the hot path, where a query costs tens of microseconds and a
dict lookup a fraction of one; every block also rewrites the top of the state tree, which
the next block's update reads again. ``ledger.chain.store`` owns one of each cache, feeds
them only after a block's transaction has committed (write-through), and clears the state
cache when it cannot tell whether a commit landed.

Never: hold a value the store's file does not (a cache entry is written only from a
committed block or from a read of the file), take a lock other than the store's, or grow
past its bound.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from itertools import islice
from typing import Final

from ledger.chain.state_tree_nodes import NodeCache, NodeReader, TreeUpdate

#: Default bound of the state point-read cache: ~30 MB of account-sized entries.
STATE_CACHE_ENTRIES: Final = 200_000
#: How full the node cache may get before it is started afresh (see SharedNodeCache).
NODE_CACHE_RESET_FRACTION: Final = 0.75


class StateCache:
    """Bounded map of state key -> value (None: known absent); oldest written evicted first.

    Not thread-safe: the store uses it under its lock. Capacity 0 disables it.
    """

    __slots__ = ("_capacity", "_slack", "entries")

    def __init__(self, capacity: int = STATE_CACHE_ENTRIES) -> None:
        if capacity < 0:
            raise ValueError(f"the state cache capacity must not be negative, got {capacity}")
        self._capacity = capacity
        self._slack = max(1, capacity // 8)  # evict in batches: one scan per batch
        self.entries: dict[bytes, bytes | None] = {}

    def put(self, key: bytes, value: bytes | None) -> None:
        if self._capacity:
            self.entries[key] = value
            if len(self.entries) > self._capacity:
                self._evict()

    def write_through(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Record a committed block's state changes (None: the key was deleted)."""
        if not self._capacity:
            return
        entries = self.entries
        for key, value in changes.items():
            entries.pop(key, None)  # re-insert: a written key is a recently used one
            entries[key] = value
        if len(entries) > self._capacity:
            self._evict()

    def _evict(self) -> None:
        entries = self.entries
        excess = len(entries) - self._capacity + self._slack
        for key in list(islice(entries, excess)):
            del entries[key]

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)


class SharedNodeCache:
    """A ``NodeCache`` in front of the store, serialised by the store's lock.

    ``NodeCache`` is not thread-safe, and tips handed to execution share this one. Once
    full, ``NodeCache`` evicts one node per insert by scanning its dict from the front,
    which slows down sharply as deleted slots pile up there (measured: 0.1-0.6 s to
    remember one 1000-transfer block's 5,500 nodes into a full 200k-node cache, against
    1 ms below the bound). So this one never lets it fill: when the next update would take
    it past :data:`NODE_CACHE_RESET_FRACTION` of its bound, it starts a fresh cache (one
    colder tree update every few dozen blocks, instead of a slow one every block).
    """

    __slots__ = ("_base", "_cache", "_lock", "_max_nodes", "_reset_at")

    def __init__(self, base: NodeReader, max_nodes: int, lock: threading.RLock) -> None:
        self._base = base
        self._max_nodes = max_nodes
        self._reset_at = int(max_nodes * NODE_CACHE_RESET_FRACTION)
        self._cache = NodeCache(base, max_nodes)
        self._lock = lock

    def get_node(self, node_key: bytes) -> bytes | None:
        with self._lock:
            return self._cache.get_node(node_key)

    def get_nodes(self, node_keys: Collection[bytes]) -> Mapping[bytes, bytes]:
        with self._lock:
            return self._cache.get_nodes(node_keys)

    def remember(self, update: TreeUpdate) -> None:
        """Cache the nodes a committed update wrote."""
        with self._lock:
            if len(self._cache) + len(update.node_writes) > self._reset_at:
                self._cache = NodeCache(self._base, self._max_nodes)
            self._cache.remember(update)

    def __len__(self) -> int:
        return len(self._cache)
