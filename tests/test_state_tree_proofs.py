"""State proofs: membership and non-membership proofs, their encoding, and tampering.

``crypto.smt_proof.verify_proof`` is what light clients and the CLI trust, so besides
"honest proofs verify" the tests check that every lie fails: a wrong value, a wrong root,
another key, a flipped bit anywhere in the encoding, a rearranged proof.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.encoding import DecodeError, encode
from crypto.smt_proof import (
    EMPTY_ROOT,
    MAX_PROOF_BYTES,
    Proof,
    ProofDecodeError,
    ProofLevel,
    verify_proof,
)
from ledger.chain.state_tree import StateTree
from ledger.chain.state_tree_nodes import MemoryNodeStore
from tests.test_state_tree_support import KEY_POOL, mined_keys

values = st.binary(max_size=6)
states = st.dictionaries(st.sampled_from(KEY_POOL), values, max_size=40)


def build(state: dict[bytes, bytes]) -> StateTree:
    store = MemoryNodeStore()
    update = StateTree.empty(store).apply(state)
    store.commit(update)
    return StateTree.at(update.new_root, store)


@settings(max_examples=100, deadline=None)
@given(state=states, absent=st.lists(st.binary(max_size=8), max_size=5))
def test_every_key_and_absent_key_has_a_proof(
    state: dict[bytes, bytes], absent: list[bytes]
) -> None:
    tree = build(state)
    for key in [*KEY_POOL, *absent]:
        proof = tree.prove(key)
        value = state.get(key)
        assert verify_proof(tree.root, key, value, proof)
        assert proof.proves_membership_of(key) == (value is not None)
        assert tree.value_hash(key) == (proof.leaf_value_hash if value is not None else None)
        assert Proof.decode(proof.encode()) == proof
        assert Proof.from_hex(proof.to_hex()) == proof


@settings(max_examples=100, deadline=None)
@given(state=states, other_value=values)
def test_proofs_do_not_lie(state: dict[bytes, bytes], other_value: bytes) -> None:
    tree = build(state)
    other_root = build({**state, b"extra": b"x"}).root
    for key in KEY_POOL:
        proof = tree.prove(key)
        value = state.get(key)
        assert not verify_proof(other_root, key, value, proof)
        if value is None:
            assert not verify_proof(tree.root, key, other_value, proof)
        else:
            assert not verify_proof(tree.root, key, None, proof)
            if other_value != value:
                assert not verify_proof(tree.root, key, other_value, proof)
        for other_key in KEY_POOL[::7]:
            if other_key != key and state.get(other_key) != value:
                assert not verify_proof(tree.root, other_key, value, proof)


@settings(max_examples=200, deadline=None)
@given(state=states.filter(lambda s: len(s) > 1), data=st.data())
def test_a_flipped_bit_anywhere_fails(state: dict[bytes, bytes], data: st.DataObject) -> None:
    tree = build(state)
    key = data.draw(st.sampled_from(KEY_POOL))
    value = state.get(key)
    raw = bytearray(tree.prove(key).encode())
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= 1 << data.draw(st.integers(0, 7))
    try:
        tampered = Proof.decode(bytes(raw))
    except ProofDecodeError:
        return
    assert not verify_proof(tree.root, key, value, tampered)


def test_rearranged_proofs_fail() -> None:
    state = {k: b"v" + k for k in [*KEY_POOL[:30], *mined_keys()]}
    tree = build(state)
    for key in state:
        proof = tree.prove(key)
        assert verify_proof(tree.root, key, state[key], proof)
        levels = list(proof.levels)
        forgeries = [
            Proof(tuple(levels[1:]), proof.leaf_path, proof.leaf_value_hash),  # a level dropped
            Proof((*levels, levels[-1]), proof.leaf_path, proof.leaf_value_hash),  # one added
            Proof(tuple(levels), None, None),  # membership turned into an empty slot
        ]
        for depth, level in enumerate(levels):
            if len(level.siblings) > 1:
                swapped = (level.siblings[1], level.siblings[0], *level.siblings[2:])
                forged = [*levels]
                forged[depth] = ProofLevel(level.bitmap, swapped)
                forgeries.append(Proof(tuple(forged), proof.leaf_path, proof.leaf_value_hash))
            for bit in range(16):
                forged = [*levels]
                forged[depth] = ProofLevel(level.bitmap ^ (1 << bit), level.siblings)
                forgeries.append(Proof(tuple(forged), proof.leaf_path, proof.leaf_value_hash))
        for forgery in forgeries:
            assert not verify_proof(tree.root, key, state[key], forgery)
            assert not verify_proof(tree.root, key, None, forgery)


def test_non_membership_by_a_neighbouring_leaf() -> None:
    first, second = mined_keys()[:2]
    tree = build({first: b"1"})
    proof = tree.prove(second)  # the one leaf sits where the second key's walk ends
    assert proof.leaf_path is not None and not proof.levels
    assert verify_proof(tree.root, second, None, proof)
    assert not verify_proof(tree.root, second, b"1", proof)
    # The same leaf offered as evidence for a key it does not share a prefix with fails.
    deep_tree = build({first: b"1", b"\x00": b"0"})
    deep_proof = deep_tree.prove(second)
    assert verify_proof(deep_tree.root, second, None, deep_proof)
    assert deep_proof.leaf_path == tree.prove(first).leaf_path
    elsewhere = deep_tree.prove(b"\x00")
    moved = Proof(deep_proof.levels, elsewhere.leaf_path, elsewhere.leaf_value_hash)
    assert not verify_proof(deep_tree.root, second, None, moved)


def test_empty_tree_proofs() -> None:
    proof = StateTree.empty(MemoryNodeStore()).prove(b"anything")
    assert proof == Proof((), None, None)
    assert verify_proof(EMPTY_ROOT, b"anything", None, proof)
    assert not verify_proof(EMPTY_ROOT, b"anything", b"", proof)
    assert not verify_proof(bytes(32), b"anything", None, proof)


@pytest.mark.parametrize(
    "junk",
    [
        None,
        "proof",
        Proof(((1, 2),), None, None),  # type: ignore[arg-type]
        Proof((ProofLevel(0, ()),), None, None),
        Proof((ProofLevel(3, (b"x",)),), b"p" * 32, b"v" * 32),
        Proof((), b"short", b"v" * 32),
        Proof((), None, b"v" * 32),
        Proof("levels", None, None),  # type: ignore[arg-type]
        Proof(tuple(ProofLevel(1, ()) for _ in range(65)), None, None),
    ],
)
def test_verify_answers_false_on_junk(junk: object) -> None:
    assert verify_proof(EMPTY_ROOT, b"k", None, junk) is False  # type: ignore[arg-type]
    assert verify_proof(EMPTY_ROOT, b"k", b"v", junk) is False  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_decode_rejects_garbage_with_its_own_error(raw: bytes) -> None:
    try:
        proof = Proof.decode(raw)
    except ProofDecodeError:
        return
    assert proof.encode() == raw  # anything accepted is canonical


def _record(
    levels: object, leaf: object, value: object, tag: str = "smt-proof", version: int = 1
) -> bytes:
    return encode([tag, version, levels, leaf, value])


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (_record([], b"p" * 32, None), "together"),
        (_record([], None, b"v" * 32), "together"),
        (_record([[0, b""]], None, None), "bitmap"),
        (_record([[1 << 16, b""]], None, None), "bitmap"),
        (_record([[3, b"x" * 32]], None, None), "sibling bytes"),  # empty slot: 2 siblings
        (_record([[1, b""]], b"p" * 32, b"v" * 32), "lone leaf"),
        (_record([[3, b"x" * 31]], b"p" * 32, b"v" * 32), "sibling bytes"),
        (_record([[1]], None, None), "bitmap, siblings"),
        (_record([], b"p" * 31, b"v" * 32), "32 bytes"),
        (_record([[3, b"x" * 64]] * 65, None, None), "limit"),
        (_record([], None, None, tag="other"), "smt-proof"),
        (_record([], None, None, version=2), "version"),
        (b"\xc1", "malformed"),
    ],
)
def test_decode_names_what_is_wrong(raw: bytes, why: str) -> None:
    with pytest.raises(ProofDecodeError, match=why):
        Proof.decode(raw)


def test_hex_and_size_limits() -> None:
    assert issubclass(ProofDecodeError, DecodeError)
    for text in ["zz", "0", 7, "00" * (MAX_PROOF_BYTES + 1)]:
        with pytest.raises(ProofDecodeError):
            Proof.from_hex(text)  # type: ignore[arg-type]
    with pytest.raises(ProofDecodeError, match="over the limit"):
        Proof.decode(b"\x00" * (MAX_PROOF_BYTES + 1))


def test_proof_module_stays_pure() -> None:
    """Light clients import crypto.smt_proof alone: no ledger, no I/O."""
    source = Path(__file__).resolve().parent.parent / "crypto" / "smt_proof.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "hashlib", "dataclasses", "typing", "crypto"}


def test_proof_size_is_small_at_realistic_sizes() -> None:
    tree = build({i.to_bytes(4, "big"): b"v" for i in range(5000)})
    sizes = [len(tree.prove(i.to_bytes(4, "big")).encode()) for i in range(0, 5000, 50)]
    assert max(sizes) < 2_000  # ~3-4 levels of up to 15 siblings at 5,000 keys
