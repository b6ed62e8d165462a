"""State chunks: each verifies alone against the state root; together they are the state."""

from __future__ import annotations

import random

import pytest

from crypto.encoding import DecodeError
from crypto.smt_proof import EMPTY_ROOT
from ledger.chain.snapshot import (
    SnapshotError,
    StateChunk,
    all_prefixes,
    chunk_depth_for,
    path_range,
    prove_chunk,
    verify_chunk,
)
from ledger.chain.state_tree import StateTree
from ledger.chain.state_tree_nodes import MemoryNodeStore


def _tree(items: dict[bytes, bytes]) -> tuple[bytes, MemoryNodeStore]:
    nodes = MemoryNodeStore()
    update = StateTree.empty(nodes).apply(items)
    nodes.commit(update)
    return update.new_root, nodes


def _chunk(root: bytes, nodes: MemoryNodeStore, items: dict[bytes, bytes], prefix: bytes):
    import hashlib

    from ledger.chain.state_tree_build import nibbles_of

    ancestors, terminal = prove_chunk(root, nodes.get_node, prefix)
    entries = sorted(
        (
            (k, v)
            for k, v in items.items()
            if nibbles_of(hashlib.sha256(k).digest()).startswith(prefix)
        ),
        key=lambda kv: hashlib.sha256(kv[0]).digest(),
    )
    return StateChunk(7, prefix, ancestors, terminal, tuple(entries))


@pytest.mark.parametrize("count", [0, 1, 2, 17, 300])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_chunks_of_every_prefix_verify_and_cover_the_state(count: int, depth: int) -> None:
    rng = random.Random(count * 10 + depth)
    items = {rng.randbytes(21): rng.randbytes(rng.randrange(1, 40)) for _ in range(count)}
    root, nodes = _tree(items)
    seen: dict[bytes, bytes] = {}
    proven: dict[bytes, bytes] = {}
    for prefix in all_prefixes(depth):
        chunk = StateChunk.decode(_chunk(root, nodes, items, prefix).encode())
        proven.update(verify_chunk(root, chunk))
        seen.update(chunk.entries)
    assert seen == items
    # The nodes the chunks prove are exactly the tree's (what a syncing node stores).
    assert proven == dict(StateTree.empty(MemoryNodeStore()).apply(items).node_writes)


def test_a_changed_dropped_or_added_entry_is_refused() -> None:
    rng = random.Random(5)
    items = {rng.randbytes(21): rng.randbytes(8) for _ in range(200)}
    root, nodes = _tree(items)
    chunk = _chunk(root, nodes, items, b"\x03")
    assert chunk.entries
    key, value = chunk.entries[0]
    bad = [
        StateChunk(
            7, chunk.prefix, chunk.ancestors, None, ((key, value + b"x"), *chunk.entries[1:])
        ),
        StateChunk(7, chunk.prefix, chunk.ancestors, None, chunk.entries[1:]),
        StateChunk(7, chunk.prefix, chunk.ancestors, None, chunk.entries[::-1]),
        StateChunk(7, b"\x05", chunk.ancestors, None, chunk.entries),
        StateChunk(7, chunk.prefix, chunk.ancestors[:1], None, ()),
    ]
    other = _chunk(root, nodes, items, b"\x05")
    bad.append(StateChunk(7, chunk.prefix, chunk.ancestors, None, chunk.entries + other.entries))
    for forged in bad:
        with pytest.raises(SnapshotError):
            verify_chunk(root, forged)
    with pytest.raises(SnapshotError):
        verify_chunk(EMPTY_ROOT, chunk)


def test_an_empty_state_and_a_one_leaf_state() -> None:
    verify_chunk(EMPTY_ROOT, StateChunk(1, b"\x00", (), None, ()))
    items = {b"only": b"one"}
    root, nodes = _tree(items)
    for prefix in all_prefixes(1):
        verify_chunk(root, _chunk(root, nodes, items, prefix))
    with pytest.raises(SnapshotError):
        verify_chunk(root, StateChunk(1, b"\x00", (), None, ()))


def test_path_ranges_and_depths() -> None:
    assert path_range(b"\x00") == (bytes(32), b"\x10" + bytes(31))
    assert path_range(b"\x0f\x0f") == (b"\xff" + bytes(31), None)
    assert chunk_depth_for(10) == 1
    assert chunk_depth_for(1_000_000) == 2
    assert chunk_depth_for(10_000_000) == 3
    with pytest.raises(DecodeError):
        StateChunk.decode(StateChunk(1, b"\x10", (), None, ()).encode())
