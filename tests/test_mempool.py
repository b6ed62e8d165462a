"""The mempool: admission rules, per-sender nonce order, caps, expiry, fair selection."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import examples
from contracts.container import MAX_CONTAINER_BYTES
from crypto.keys import PrivateKey
from ledger.chain.types import Deploy, Transaction, Transfer, TxLimits, TxRejected
from ledger.node.mempool import SELECT_RUN, Mempool, check_transaction

CHAIN = "mempool-test"
KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(6)]
TO = b"\x42" * 20


def tx(key: int, nonce: int, *, expiry: int | None = None, amount: int = 1) -> Transaction:
    return Transaction.create(
        KEYS[key], CHAIN, nonce, Transfer(TO, amount), gas_limit=21_000, expiry_height=expiry
    )


def pool(**kw: int) -> Mempool:
    return Mempool(**{"max_txs": 1000, "max_bytes": 10**6, **kw})


def rejected(p: Mempool, t: Transaction, nonce: int = 0, height: int = 0) -> str:
    with pytest.raises(TxRejected) as info:
        p.add(t, nonce, height)
    return info.value.code


def test_check_transaction_verifies_once_and_rejects_forgeries() -> None:
    good = tx(0, 0)
    assert check_transaction(good.raw, CHAIN, TxLimits()) == good
    forged = bytearray(good.raw)
    forged[-1] ^= 1
    with pytest.raises(TxRejected) as info:
        check_transaction(bytes(forged), CHAIN, TxLimits())
    assert info.value.code == "bad_signature"
    with pytest.raises(TxRejected) as info:
        check_transaction(good.raw, "other-chain", TxLimits())
    assert info.value.code == "wrong_chain"


@pytest.mark.parametrize(
    ("code", "expected", "says"),
    [
        (examples.load("token") + b"\x00" * (26 * 1024), "bad_code", "code section is"),
        (examples.load("token")[:-1], "bad_code", "falls through past the end"),
        (b"QVM\x02\x00\x00\x00", "bad_code", "unsupported code version 2"),
        (b"not a contract", "bad_code", "no QVM header"),
        (b"QVM\x01" + bytes(MAX_CONTAINER_BYTES), "too_large", "over the limit"),
    ],
)
def test_contract_code_the_vm_would_refuse_is_rejected_at_admission(
    code: bytes, expected: str, says: str
) -> None:
    """DESIGN §4: oversized or malformed input is refused at admission, before it can
    spend the sender's nonce in a block as a failed deploy."""
    deploy = Transaction.create(KEYS[0], CHAIN, 0, Deploy(code), gas_limit=5_000_000)
    with pytest.raises(TxRejected) as info:
        check_transaction(deploy.raw, CHAIN, TxLimits())
    assert info.value.code == expected
    assert says in info.value.message
    good = Transaction.create(
        KEYS[0], CHAIN, 0, Deploy(examples.load("token")), gas_limit=5_000_000
    )
    assert check_transaction(good.raw, CHAIN, TxLimits()) == good


def test_duplicates_replays_and_nonce_window() -> None:
    p = pool(nonce_window=4)
    p.add(tx(0, 5), account_nonce=5, height=0)
    assert rejected(p, tx(0, 5), nonce=5) == "duplicate"
    assert rejected(p, tx(0, 5, amount=2), nonce=5) == "nonce_taken"
    assert rejected(p, tx(0, 4), nonce=5) == "nonce_too_low"  # a replay of a used nonce
    assert rejected(p, tx(0, 9), nonce=5) == "nonce_too_high"
    p.add(tx(0, 8), account_nonce=5, height=0)  # a gap is allowed inside the window
    assert len(p) == 2
    assert p.statistics().rejected == {
        "duplicate": 1,
        "nonce_taken": 1,
        "nonce_too_low": 1,
        "nonce_too_high": 1,
    }


def test_caps_refuse_instead_of_growing() -> None:
    p = pool(max_txs=3)
    for n in range(3):
        p.add(tx(0, n), 0, 0)
    assert rejected(p, tx(1, 0)) == "mempool_full"
    small = pool(max_bytes=len(tx(0, 0).raw) * 2)
    small.add(tx(0, 0), 0, 0)
    small.add(tx(0, 1), 0, 0)
    assert rejected(small, tx(1, 0)) == "mempool_full"
    assert small.size_bytes <= small.max_bytes


def test_selection_takes_consecutive_nonces_and_waits_for_gaps() -> None:
    p = pool()
    for n in (0, 1, 3):
        p.add(tx(0, n), 0, 0)
    chosen = p.select(max_txs=10, max_bytes=10**6)
    assert [t.nonce for t in chosen] == [0, 1]
    assert p.select(max_txs=10, max_bytes=10**6) == []  # 0 and 1 are proposed, 2 missing
    p.add(tx(0, 2), 0, 0)
    assert [t.nonce for t in p.select(max_txs=10, max_bytes=10**6)] == [2, 3]
    p.release_proposed()
    assert [t.nonce for t in p.select(max_txs=10, max_bytes=10**6)] == [0, 1, 2, 3]


def test_the_view_change_timer_watches_only_includable_transactions() -> None:
    """A transaction behind a nonce gap waits for its sender, not for the primary: it must
    not be the "oldest waiting" request whose delay makes validators change view
    (otherwise any client could force view changes, Aardvark's point)."""
    p = pool()
    assert p.oldest_includable() is None
    gap = tx(0, 5)
    p.add(gap, 0, 0)  # account 0's next nonce is 0: nonce 5 cannot be included
    assert p.oldest_includable() is None
    ready = tx(1, 0)
    p.add(ready, 0, 0)
    assert p.oldest_includable() == ready.hash
    for n in range(5):
        p.add(tx(0, n), 0, 0)
    assert p.oldest_includable() == ready.hash  # arrived before account 0's nonce 0


def test_selection_is_round_robin_between_senders() -> None:
    p = pool()
    for n in range(3 * SELECT_RUN):
        p.add(tx(0, n), 0, 0)
    p.add(tx(1, 0), 0, 0)
    chosen = p.select(max_txs=SELECT_RUN + 1, max_bytes=10**6)
    assert tx(1, 0) in chosen


def test_selection_respects_byte_and_gas_budgets() -> None:
    p = pool()
    for n in range(5):
        p.add(tx(0, n), 0, 0)
    size = len(tx(0, 0).raw)
    assert len(p.select(max_txs=10, max_bytes=2 * size)) == 2
    p.release_proposed()
    assert len(p.select(max_txs=10, max_bytes=10**6, max_gas=3 * 21_000)) == 3


def test_commit_removes_included_and_stale_and_expires() -> None:
    p = pool(ttl_blocks=10)
    for n in range(4):
        p.add(tx(0, n), 0, 0)
    p.add(tx(1, 0, expiry=5), 0, 0)
    p.add(tx(2, 7), 7, 0)
    block = p.select(max_txs=2, max_bytes=10**6)
    p.committed(block, {KEYS[0].address: 3}, height=1)  # nonce 2 was included elsewhere
    assert [
        t.nonce for t in p.select(max_txs=10, max_bytes=10**6) if t.sender == KEYS[0].public_key
    ] == [3]
    assert tx(1, 0, expiry=5).hash in p
    p.committed([], {}, height=5)
    assert tx(1, 0, expiry=5).hash not in p  # expired at height 5
    p.committed([], {}, height=10)
    assert len(p) == 0  # ttl
    assert rejected(p, tx(1, 1, expiry=3), nonce=1, height=3) == "expired"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "select", "commit", "release"]),
            st.integers(0, 5),
            st.integers(0, 12),
        ),
        max_size=60,
    )
)
def test_invariants_under_random_operations(ops: list[tuple[str, int, int]]) -> None:
    p = Mempool(max_txs=20, max_bytes=20 * 200, nonce_window=8, ttl_blocks=6)
    nonces = {k.address: 0 for k in KEYS}
    height = 0
    proposed: set[bytes] = set()
    for op, key, n in ops:
        if op == "add":
            with contextlib.suppress(TxRejected):
                p.add(tx(key, n), nonces[KEYS[key].address], height)
        elif op == "select":
            chosen = p.select(max_txs=n + 1, max_bytes=10**6)
            for t in chosen:
                assert t.hash not in proposed, "a transaction was proposed twice"
                proposed.add(t.hash)
            by_sender: dict[bytes, list[int]] = {}
            for t in chosen:
                by_sender.setdefault(t.sender, []).append(t.nonce)
            for seq in by_sender.values():
                assert seq == list(range(seq[0], seq[0] + len(seq))), "nonces must be consecutive"
        elif op == "commit":
            chosen = p.select(max_txs=n + 1, max_bytes=10**6)
            height += 1
            after: dict[bytes, int] = {}
            for t in chosen:
                after[t.sender_address] = t.nonce + 1
            nonces.update(after)
            p.committed(chosen, after, height)
            proposed.clear()
            p.release_proposed()
        else:
            p.release_proposed()
            proposed.clear()
        stats = p.statistics()
        assert stats.transactions <= 20 and stats.bytes <= 20 * 200
        assert stats.bytes == sum(len(p.get(h).raw) for h in p.pending_hashes())  # type: ignore[union-attr]
        for h in p.pending_hashes():
            t = p.get(h)
            assert t is not None and t.nonce >= nonces[t.sender_address]
