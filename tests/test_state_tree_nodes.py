"""Node stores, pending overlays and caches under the state tree.

The persistence contract: a store that applies each TreeUpdate (writes, then deletions) in
height order holds exactly the latest tree; executing on an overlay of pending updates is
indistinguishable from executing on the committed store; dropping an overlay leaves no
trace. A plain sqlite3 table stands in for the block store to show the contract end to end.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.smt_proof import verify_proof
from ledger.chain.state_tree import StateTree
from ledger.chain.state_tree_nodes import (
    MemoryNodeStore,
    NodeCache,
    NodeReader,
    OverlayNodes,
    TreeUpdate,
)
from tests.test_state_tree_support import KEY_POOL, reference_root

values = st.binary(max_size=6)
states = st.dictionaries(st.sampled_from(KEY_POOL), values, max_size=40)
changes_st = st.dictionaries(st.sampled_from(KEY_POOL), st.none() | values, max_size=24)


def committed(state: dict[bytes, bytes]) -> tuple[StateTree, MemoryNodeStore]:
    store = MemoryNodeStore()
    update = StateTree.empty(store).apply(state)
    store.commit(update)
    return StateTree.at(update.new_root, store), store


def snapshot(store: MemoryNodeStore) -> dict[bytes, bytes | None]:
    return {key: store.get_node(key) for key in store.node_keys()}


def updated(state: dict[bytes, bytes], changes: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    after = dict(state)
    for key, value in changes.items():
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    return after


@settings(max_examples=100, deadline=None)
@given(state=states, first=changes_st, second=changes_st, third=changes_st)
def test_executing_on_pending_updates_equals_executing_on_committed_ones(
    state: dict[bytes, bytes],
    first: dict[bytes, bytes | None],
    second: dict[bytes, bytes | None],
    third: dict[bytes, bytes | None],
) -> None:
    # Pending: h, h+1 and h+2 executed before anything is committed.
    tree, store = committed(state)
    untouched = snapshot(store)
    pending: list[TreeUpdate] = []
    reader: NodeReader = store
    root = tree.root
    for changes in (first, second, third):
        update = StateTree.at(root, reader).apply(changes)
        pending.append(update)
        reader = OverlayNodes(reader, update)
        root = update.new_root
    assert snapshot(store) == untouched  # nothing was written while pending

    # Committed: each block applied on the persisted result of the previous one.
    tree2, store2 = committed(state)
    for changes, update in zip((first, second, third), pending, strict=True):
        direct = tree2.apply(changes)
        assert direct == update
        store2.commit(direct)
        tree2 = StateTree.at(direct.new_root, store2)

    for update in pending:  # the block store commits them in height order
        store.commit(update)
    assert snapshot(store) == snapshot(store2)
    final = StateTree.at(root, store)
    assert set(final.iter_node_keys()) == set(store.node_keys())
    assert root == reference_root(updated(updated(updated(state, first), second), third))


@settings(max_examples=60, deadline=None)
@given(state=states, changes=changes_st)
def test_an_overlay_reads_like_the_committed_tree(
    state: dict[bytes, bytes], changes: dict[bytes, bytes | None]
) -> None:
    tree, store = committed(state)
    update = tree.apply(changes)
    overlay = OverlayNodes(store, update)
    on_overlay = StateTree.at(update.new_root, overlay)
    after = updated(state, changes)
    for key in KEY_POOL:
        assert verify_proof(update.new_root, key, after.get(key), on_overlay.prove(key))
    for stale_key in update.stale_nodes:
        assert overlay.get_node(stale_key) is None
        assert stale_key not in overlay.get_nodes([stale_key])
    for key, node in update.node_writes.items():
        assert overlay.get_node(key) == node
    assert overlay.base is store and overlay.update is update


@settings(max_examples=60, deadline=None)
@given(state=states, ours=changes_st, theirs=changes_st)
def test_competing_proposals_leave_only_the_committed_one(
    state: dict[bytes, bytes],
    ours: dict[bytes, bytes | None],
    theirs: dict[bytes, bytes | None],
) -> None:
    """A view change discards one proposal's overlay; the other one commits cleanly."""
    tree, store = committed(state)
    discarded = tree.apply(ours)
    StateTree.at(discarded.new_root, OverlayNodes(store, discarded)).apply(theirs)
    chosen = tree.apply(theirs)
    store.commit(chosen)
    final = StateTree.at(chosen.new_root, store)
    assert set(final.iter_node_keys()) == set(store.node_keys())
    assert final.root == reference_root(updated(state, theirs))


class SqliteNodes:
    """What the block store does, in miniature: one table, one transaction per block."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.db.execute(
            "CREATE TABLE state_nodes (key BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID"
        )

    def get_node(self, node_key: bytes) -> bytes | None:
        row = self.db.execute("SELECT node FROM state_nodes WHERE key = ?", (node_key,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_nodes(self, node_keys: Collection[bytes]) -> Mapping[bytes, bytes]:
        wanted = list(node_keys)
        found: dict[bytes, bytes] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT key, node FROM state_nodes WHERE key IN ({marks})"
            found.update((bytes(k), bytes(v)) for k, v in self.db.execute(query, part))
        return found

    def commit(self, update: TreeUpdate) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR REPLACE INTO state_nodes (key, node) VALUES (?, ?)",
            update.node_writes.items(),
        )
        self.db.executemany(
            "DELETE FROM state_nodes WHERE key = ?", [(k,) for k in update.stale_nodes]
        )
        self.db.execute("COMMIT")

    def keys(self) -> set[bytes]:
        return {bytes(k) for (k,) in self.db.execute("SELECT key FROM state_nodes")}


def test_a_sqlite_table_follows_the_contract() -> None:
    import random

    rng = random.Random(11)
    universe = [rng.randbytes(21) for _ in range(600)]
    nodes = SqliteNodes()
    tree = StateTree.empty(nodes)
    state: dict[bytes, bytes] = {}
    for _ in range(15):
        changes: dict[bytes, bytes | None] = {
            key: None if rng.random() < 0.3 else rng.randbytes(8)
            for key in rng.sample(universe, 120)
        }
        update = tree.apply(changes)
        nodes.commit(update)
        tree = StateTree.at(update.new_root, nodes)
        state = updated(state, changes)
        assert nodes.keys() == set(tree.iter_node_keys())
    assert tree.root == reference_root(state)
    assert tree.check_integrity() == len(state)


def test_node_cache_serves_the_same_nodes_within_its_bound() -> None:
    tree, store = committed({bytes([i]): b"v%d" % i for i in range(40)})
    cache = NodeCache(store, max_nodes=8)
    cached = StateTree.at(tree.root, cache)
    for i in range(40):
        assert cached.prove(bytes([i])) == tree.prove(bytes([i]))
    assert len(cache) <= 8
    assert cache.hits > 0 and cache.misses > 0
    update = cached.apply({b"\x00": b"new"})
    assert update == tree.apply({b"\x00": b"new"})
    store.commit(update)
    cache.remember(update)
    assert all(cache.get_node(k) == node for k, node in update.node_writes.items())
    assert cache.get_nodes([b"absent"]) == {}
    assert cache.get_node(b"absent") is None
    with pytest.raises(ValueError):
        NodeCache(store, max_nodes=0)


def test_memory_store_reads() -> None:
    tree, store = committed({b"a": b"1", b"b": b"2"})
    keys = list(store.node_keys())
    assert dict(store.get_nodes([*keys, b"absent"])) == {k: store.get_node(k) for k in keys}
    assert tree.root in store and b"absent" not in store
