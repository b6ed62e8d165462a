"""The state tree: roots, incremental batch updates, persistence accounting, corruption.

The properties: the root is a pure function of the key→value set (insertion order, batch
boundaries, hash seeds do not matter) and equals a from-scratch reference; an update's
writes and deletions keep the node store equal to exactly the nodes reachable from the new
root (no leaks, nothing missing); a broken store is reported, never papered over.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.hashing import tagged_hash
from crypto.smt_proof import EMPTY_ROOT, LEAF_NODE_SIZE, key_path, leaf_node, node_hash
from ledger.chain.state_tree import (
    CorruptNodeError,
    MissingNodeError,
    StateTree,
    StateTreeError,
)
from ledger.chain.state_tree_nodes import MemoryNodeStore, TreeUpdate
from tests.test_state_tree_support import KEY_POOL, mined_keys, reference_root

ROOT_DIR = Path(__file__).resolve().parent.parent

values = st.binary(max_size=6)
keys = st.sampled_from(KEY_POOL)
changes_st = st.dictionaries(keys, st.none() | values, max_size=24)
states = st.dictionaries(keys, values, max_size=40)


def build(state: dict[bytes, bytes]) -> tuple[StateTree, MemoryNodeStore]:
    store = MemoryNodeStore()
    update = StateTree.empty(store).apply(state)
    store.commit(update)
    return StateTree.at(update.new_root, store), store


def commit(
    tree: StateTree, store: MemoryNodeStore, changes: dict[bytes, bytes | None]
) -> StateTree:
    update = tree.apply(changes)
    assert not set(update.node_writes) & set(update.stale_nodes)
    store.commit(update)
    return StateTree.at(update.new_root, store)


def assert_store_is_exactly_the_tree(tree: StateTree, store: MemoryNodeStore) -> None:
    reachable = list(tree.iter_node_keys())
    assert len(reachable) == len(set(reachable))
    assert set(reachable) == set(store.node_keys())


# --- hashing rules and pinned vectors ---------------------------------------------------


def test_hashing_rules_are_the_documented_tagged_hashes() -> None:
    assert tagged_hash("smt", b"\x02") == EMPTY_ROOT
    leaf = leaf_node(key_path(b"k"), b"v")
    assert len(leaf) == LEAF_NODE_SIZE and leaf[0] == 0
    assert node_hash(leaf) == tagged_hash("smt", leaf)


@pytest.mark.parametrize(
    ("state", "root_hex"),
    [
        ({}, "e12dfbb5a726725322af748eeaeccc92c2684707fecd94001aea45b6396ba2aa"),
        ({b"a": b"1"}, "595ed6cf8d2f3b7a86f9ac7dd44d89b12f013a8462e3292197d3a49995d713f6"),
        (
            {b"a": b"1", b"b": b"2"},
            "97beb2e6856824237cc87a31e7d8ad5bc0842aa34b6129ad3531148f5889e6c5",
        ),
        (
            {bytes([i]): bytes([i]) * 3 for i in range(100)},
            "7a1fc3e778b05c64ba0a2abaa7fd028cbc9fb277fd04afc03e683ec83888fdd7",
        ),
        (
            {k: k for k in mined_keys()},
            "95d9939a2e56efc4f3e4573f1469667662d39b60e9571f9c871c341e3ce94681",
        ),
    ],
    ids=["empty", "one", "two", "hundred", "shared-prefixes"],
)
def test_known_roots(state: dict[bytes, bytes], root_hex: str) -> None:
    """Pinned vectors: a change here is a consensus-breaking change of the state root."""
    assert reference_root(state).hex() == root_hex
    assert build(state)[0].root.hex() == root_hex


def test_one_key_tree_is_its_leaf() -> None:
    tree, store = build({b"k": b"v"})
    leaf = leaf_node(key_path(b"k"), b"v")
    assert tree.root == node_hash(leaf)
    assert list(store.node_keys()) == [tree.root]
    assert store.get_node(tree.root) == leaf


def test_constructor_rejects_a_malformed_root() -> None:
    with pytest.raises(ValueError):
        StateTree(b"short", MemoryNodeStore())


def test_empty_change_set_is_a_no_op() -> None:
    tree, _ = build({b"a": b"1"})
    update = tree.apply({})
    assert update == TreeUpdate.create(tree.root, tree.root, {}, ())
    assert not update.changed


def test_values_must_be_bytes() -> None:
    tree, _ = build({b"a": b"1"})
    with pytest.raises(TypeError):
        tree.apply({b"a": "text"})  # type: ignore[dict-item]


# --- the root is a function of the set --------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(changes_st, max_size=8))
def test_incremental_updates_match_the_reference(batches: list[dict[bytes, bytes | None]]) -> None:
    store = MemoryNodeStore()
    tree = StateTree.empty(store)
    state: dict[bytes, bytes] = {}
    for changes in batches:
        tree = commit(tree, store, changes)
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        assert tree.root == reference_root(state)
        assert_store_is_exactly_the_tree(tree, store)
        assert tree.check_integrity() == len(state)


@settings(max_examples=100, deadline=None)
@given(state=states, data=st.data())
def test_root_ignores_order_and_batch_boundaries(
    state: dict[bytes, bytes], data: st.DataObject
) -> None:
    items = data.draw(st.permutations(sorted(state.items())))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(items)), max_size=5)))
    store = MemoryNodeStore()
    tree = StateTree.empty(store)
    for lo, hi in zip([0, *cuts], [*cuts, len(items)], strict=True):
        tree = commit(tree, store, dict(items[lo:hi]))
    one_shot, one_shot_store = build(dict(reversed(items)))
    assert tree.root == one_shot.root == reference_root(state)
    assert set(store.node_keys()) == set(one_shot_store.node_keys())


@settings(max_examples=100, deadline=None)
@given(state=states, data=st.data())
def test_deleting_everything_returns_the_empty_root(
    state: dict[bytes, bytes], data: st.DataObject
) -> None:
    tree, store = build(state)
    doomed = data.draw(st.permutations(sorted(state)))
    cut = data.draw(st.integers(0, len(doomed)))
    tree = commit(tree, store, dict.fromkeys(doomed[:cut]))
    assert_store_is_exactly_the_tree(tree, store)
    tree = commit(tree, store, dict.fromkeys(doomed[cut:]))
    assert tree.root == EMPTY_ROOT
    assert len(store) == 0
    # ...and the empty tree grows back to the same root as before.
    assert commit(tree, store, dict(state)).root == reference_root(state)


@settings(max_examples=100, deadline=None)
@given(state=states)
def test_rewriting_current_values_changes_nothing(state: dict[bytes, bytes]) -> None:
    tree, _ = build(state)
    absent = [k for k in KEY_POOL if k not in state]
    update = tree.apply({**state, **dict.fromkeys(absent)})
    assert update.new_root == tree.root
    assert not update.node_writes and not update.stale_nodes


@settings(max_examples=60, deadline=None)
@given(state=states, changes=changes_st)
def test_apply_does_not_touch_the_store(
    state: dict[bytes, bytes], changes: dict[bytes, bytes | None]
) -> None:
    tree, store = build(state)
    before = {k: store.get_node(k) for k in store.node_keys()}
    tree.apply(changes)
    assert {k: store.get_node(k) for k in store.node_keys()} == before


def test_a_larger_random_history_matches_the_reference() -> None:
    import random

    rng = random.Random(2024)
    universe = [rng.randbytes(21) for _ in range(3000)]
    store = MemoryNodeStore()
    tree = StateTree.empty(store)
    state: dict[bytes, bytes] = {}
    for _ in range(12):
        changes: dict[bytes, bytes | None] = {}
        for key in rng.sample(universe, 400):
            changes[key] = None if rng.random() < 0.25 else rng.randbytes(rng.randint(0, 40))
        tree = commit(tree, store, changes)
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    assert tree.root == reference_root(state)
    assert_store_is_exactly_the_tree(tree, store)
    assert tree.check_integrity() == len(state)
    assert sorted(p for p, _ in tree.iter_leaves()) == sorted(key_path(k) for k in state)


_HASH_SEED_SCRIPT = """
from ledger.chain.state_tree import StateTree
from ledger.chain.state_tree_nodes import MemoryNodeStore
keys = {b"k%d" % i for i in range(500)}          # set order depends on the hash seed
state = {k: k[::-1] for k in keys}
store = MemoryNodeStore()
tree = StateTree.empty(store)
batch = {}
for k in keys:
    batch[k] = state[k]
    if len(batch) == 97:
        update = tree.apply(batch); store.commit(update)
        tree = StateTree.at(update.new_root, store); batch = {}
update = tree.apply(batch)
print(update.new_root.hex())
"""


def test_same_root_under_different_hash_seeds() -> None:
    roots = set()
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _HASH_SEED_SCRIPT],
            env=env,
            cwd=ROOT_DIR,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        roots.add(done.stdout.strip())
    expected = reference_root({b"k%d" % i: (b"k%d" % i)[::-1] for i in range(500)})
    assert roots == {expected.hex()}


# --- a broken store is reported ---------------------------------------------------------


def test_a_missing_node_is_reported() -> None:
    tree, store = build({bytes([i]): b"v" for i in range(50)})
    victim = next(k for k in store.node_keys() if k != tree.root)
    store._nodes.pop(victim)
    with pytest.raises(MissingNodeError):
        tree.check_integrity()
    with pytest.raises(MissingNodeError):
        for i in range(50):
            tree.prove(bytes([i]))
    with pytest.raises(MissingNodeError):
        tree.apply({bytes([i]): b"w" for i in range(50)})


@pytest.mark.parametrize(
    "garbage", [b"", b"\x00", b"\x01\x00\x00", b"\x01\x00\x03" + bytes(32), b"\x07" * 65]
)
def test_a_malformed_node_is_reported(garbage: bytes) -> None:
    tree, store = build({bytes([i]): b"v" for i in range(50)})
    store._nodes[tree.root] = garbage
    with pytest.raises(CorruptNodeError):
        tree.apply({b"\x00": b"w"})
    with pytest.raises(CorruptNodeError):
        tree.prove(b"\x00")


def test_integrity_check_rehashes_and_checks_placement() -> None:
    tree, store = build({bytes([i]): b"v" for i in range(50)})
    leaf_key = next(k for k in store.node_keys() if len(store.get_node(k) or b"") == LEAF_NODE_SIZE)
    node = store.get_node(leaf_key)
    assert node is not None
    store._nodes[leaf_key] = node[:-1] + bytes([node[-1] ^ 1])  # tampered value hash
    with pytest.raises(CorruptNodeError, match="does not match"):
        tree.check_integrity()
    assert issubclass(CorruptNodeError, StateTreeError)
    assert issubclass(MissingNodeError, StateTreeError)


def test_shared_prefixes_make_chains_that_collapse_when_emptied() -> None:
    first, second = mined_keys()[:2]  # paths share their first four nibbles
    tree, store = build({first: b"1"})
    tree = commit(tree, store, {second: b"2"})  # pushes the first leaf down five levels
    assert len(tree.prove(first).levels) >= 5
    assert len(store) == len(tree.prove(first).levels) + 2
    tree = commit(tree, store, {second: None})  # the chain collapses: the leaf is lifted
    assert tree.root == node_hash(leaf_node(key_path(first), b"1"))
    assert list(store.node_keys()) == [tree.root]
