"""The mempool: admission rules, per-sender nonce order, caps, expiry, fair selection."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import examples
from contracts.container import MAX_CONTAINER_BYTES
from crypto.keys import PrivateKey
from genesis.builder import build_genesis
from ledger.chain.execute import ChainRules
from ledger.chain.types import Deploy, Transaction, Transfer, TxLimits, TxRejected
from ledger.engine.admission import (
    AdmittedTx,
    BatchGate,
    RequestRuns,
    VerifiedCache,
    admit_raw,
    check_transaction,
)
from ledger.engine.mempool import SELECT_RUN, DropReason, Mempool

CHAIN = "mempool-test"
KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(6)]
TO = b"\x42" * 20


def tx(key: int, nonce: int, *, expiry: int | None = None, amount: int = 1) -> Transaction:
    return Transaction.create(
        KEYS[key], CHAIN, nonce, Transfer(TO, amount), gas_limit=21_000, expiry_height=expiry
    )


def pool(**kw: int) -> Mempool:
    return Mempool(**{"max_txs": 1000, "max_bytes": 10**6, **kw})


def add(p: Mempool, t: Transaction, nonce: int = 0, height: int = 0, now_ms: int = 0) -> None:
    p.add(AdmittedTx(t), nonce, height=height, now_ms=now_ms)


def rejected(p: Mempool, t: Transaction, nonce: int = 0, height: int = 0) -> str:
    with pytest.raises(TxRejected) as info:
        add(p, t, nonce, height)
    return info.value.code


def select(
    p: Mempool, n: int = 10, *, after: dict[bytes, int] | None = None, **kw: int
) -> list[Transaction]:
    return p.select(
        max_txs=n,
        max_bytes=kw.get("max_bytes", 10**6),
        max_gas=kw.get("max_gas", 10**12),
        after=after,
    )


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
    add(p, tx(0, 5), 5)
    assert rejected(p, tx(0, 5), nonce=5) == "duplicate"
    assert rejected(p, tx(0, 5, amount=2), nonce=5) == "nonce_taken"
    assert rejected(p, tx(0, 4), nonce=5) == "nonce_too_low"  # a replay of a used nonce
    assert rejected(p, tx(0, 9), nonce=5) == "nonce_too_high"
    add(p, tx(0, 8), 5)  # a gap is allowed inside the window
    assert len(p) == 2
    assert p.statistics().rejected == {
        "duplicate": 1,
        "nonce_taken": 1,
        "nonce_too_high": 1,
        "nonce_too_low": 1,
    }


def test_caps_refuse_instead_of_growing() -> None:
    p = pool(max_txs=3)
    for n in range(3):
        add(p, tx(0, n))
    assert rejected(p, tx(1, 0)) == "mempool_full"
    small = pool(max_bytes=len(tx(0, 0).raw) * 2)
    add(small, tx(0, 0))
    add(small, tx(0, 1))
    assert rejected(small, tx(1, 0)) == "mempool_full"
    assert small.size_bytes <= small.max_bytes


def test_under_backpressure_only_gap_fillers_and_runs_get_in() -> None:
    """A full pool of transactions stuck behind gaps must not lock out the ones that fill
    the gaps (the load simulator's collapse before this rule), and under pressure new gaps
    are refused while the queued share is full."""
    p = pool(max_txs=8)  # queued share: 8 // 4 = 2
    add(p, tx(0, 1))
    add(p, tx(0, 2))  # two waiting behind nonce 0
    add(p, tx(1, 0))
    assert p.statistics().includable == 1
    assert p.gate(KEYS[0].address, 200, nonce=0, client_limit=1) is None  # fills the gap
    busy = p.gate(KEYS[2].address, 200, nonce=0, client_limit=1)
    assert busy is not None and busy.code == "busy"
    assert p.gate(KEYS[2].address, 200, nonce=0, client_limit=5) is None
    gap = p.gate(KEYS[1].address, 200, nonce=5, client_limit=5)
    assert gap is not None and "nonce gaps" in gap.message
    add(p, tx(0, 0))
    assert p.statistics().includable == 4


def test_a_retried_run_that_fills_a_gap_gets_in_whole_under_backpressure() -> None:
    """Issue 18's stall: a client's batch refused whole (``busy``) leaves a run of nonces
    missing while its later batches wait behind it. The retry of that run is checked by the
    gate before any signature, against the pool before any of it is added: only its first
    transaction fills the gap there. The batch gate lets the rest of the run through to the
    engine, which adds them one after the other, each now filling the gap."""
    p = pool()
    for n in range(5, 9):
        add(p, tx(0, n))  # sender 0 waits behind nonces 0..4
    add(p, tx(1, 0))
    add(p, tx(1, 1))  # two includable: at the client limit below
    limit = 2
    run = [tx(0, n) for n in range(5)]

    def pool_gate(sender: bytes, size: int, nonce: int) -> TxRejected | None:
        return p.gate(sender, size, nonce=nonce, client_limit=limit)

    # Judged against the pool alone, only nonce 0 fills the gap.
    refused = [pool_gate(t.sender_address, len(t.raw), t.nonce) for t in run]
    assert refused[0] is None and all(r is not None and r.code == "busy" for r in refused[1:])
    # The batch gate: each continues the run the batch already let through.
    gate = BatchGate(pool_gate)
    rules = ChainRules.from_genesis(
        build_genesis(CHAIN, [("v0", KEYS[5].public_key)], genesis_time="2026-01-01T00:00:00Z")
    )
    checked = []
    for t in run:
        admitted = admit_raw(t.raw, rules, VerifiedCache(), gate=gate)
        assert gate.admitted(admitted) is None
        checked.append(admitted)
    for admitted in checked:  # the engine's turn: the full gate, with the pool as it grows
        p.add(admitted, 0, height=0, now_ms=0, client_limit=limit)
    assert p.statistics().includable == 2 + 9
    # A run that does not start at a gap is still refused under pressure, whole.
    fresh = BatchGate(lambda s, z, n: p.gate(s, z, nonce=n, client_limit=limit))
    outcomes = []
    for t in (tx(2, 0), tx(2, 1)):
        try:
            admit_raw(t.raw, rules, VerifiedCache(), gate=fresh)
            outcomes.append("admitted")
        except TxRejected as exc:
            outcomes.append(exc.code)
    assert outcomes == ["busy", "busy"]


def test_a_refused_nonce_takes_the_senders_later_ones_in_the_request_with_it() -> None:
    """Issue 18's stall, measured: a batch of 250 was checked while blocks committed, so
    the gate refused some of a sender's nonces and let later ones through. Those waited
    behind a gap of the request's own making, the node held the answer until they
    committed (never: 30 s), the client learnt of the refusal only then, and the mempool
    had dropped everything behind the gap by that time. Now the first refusal of a
    sender's nonce refuses its later nonces in the request with the same code; other
    senders are not affected, and a transaction this node verified before (which skips the
    gate) is refused with its sender's run all the same."""
    answers = iter([TxRejected("busy", "full"), None, None, None])

    def flipping(sender: bytes, size: int, nonce: int) -> TxRejected | None:
        return next(answers)  # the pool drains while the batch is checked

    gate = BatchGate(flipping)
    rules = ChainRules.from_genesis(
        build_genesis(CHAIN, [("v0", KEYS[5].public_key)], genesis_time="2026-01-01T00:00:00Z")
    )
    verified = VerifiedCache()
    later = tx(0, 6)
    verified.add(later.hash)  # a retry this node verified before
    outcomes: list[str] = []
    for t in (tx(0, 4), tx(0, 5), later, tx(1, 0), tx(1, 1)):
        try:  # as check_batch does
            held = gate.admitted(admit_raw(t.raw, rules, verified, gate=gate))
            if held is not None:
                raise held
            outcomes.append("admitted")
        except TxRejected as exc:
            outcomes.append(f"{exc.code}: {exc.message}")
    # Alone, a transaction verified before still skips the gate: the engine then tells a
    # resubmission what it is (duplicate, or committed), not "busy".
    always_busy = BatchGate(lambda s, z, n: TxRejected("busy", "full"))
    again = admit_raw(later.raw, rules, verified, gate=always_busy)
    assert always_busy.admitted(again) is None
    assert outcomes == [
        "busy: full",
        "busy: nonce 4 of this sender was refused in this request (busy); resend from nonce 4",
        "busy: nonce 4 of this sender was refused in this request (busy); resend from nonce 4",
        "admitted",
        "admitted",
    ]
    # The engine's side of the rule: what it refuses takes the sender's later nonces with
    # it; final refusals (a client's mistake, not "for now") and earlier nonces do not.
    runs = RequestRuns()
    runs.refused(KEYS[0].address, 7, "mempool_full")
    runs.refused(KEYS[1].address, 3, "nonce_too_low")
    held = runs.check(KEYS[0].address, 9)
    assert (
        held is not None and held.code == "mempool_full" and "resend from nonce 7" in held.message
    )
    assert runs.check(KEYS[0].address, 7) is None and runs.check(KEYS[0].address, 2) is None
    assert runs.check(KEYS[1].address, 4) is None


def test_per_sender_cap_and_client_backpressure_are_checked_before_the_signature() -> None:
    """Issue 12: an over-cap sender is refused by the gate (a dict lookup), before any
    signature is verified; clients are refused below the hard cap once the backlog is
    about what the network commits in a few seconds."""
    p = pool(max_per_sender=2)
    add(p, tx(0, 0))
    add(p, tx(0, 1))
    refused = p.gate(KEYS[0].address, 200)
    assert refused is not None and refused.code == "sender_busy"
    assert p.gate(KEYS[1].address, 200) is None
    limited = p.gate(KEYS[1].address, 200, client_limit=2)
    assert limited is not None and limited.code == "busy"


def test_selection_takes_consecutive_nonces_and_waits_for_gaps() -> None:
    p = pool()
    for n in (0, 1, 3):
        add(p, tx(0, n))
    assert [t.nonce for t in select(p)] == [0, 1]
    # 0 and 1 are in an uncommitted ancestor: the next proposal starts after them.
    assert select(p, after={KEYS[0].address: 2}) == []
    add(p, tx(0, 2))
    assert [t.nonce for t in select(p, after={KEYS[0].address: 2})] == [2, 3]
    assert [t.nonce for t in select(p)] == [0, 1, 2, 3]


def test_primary_and_backups_share_one_includability_rule() -> None:
    """Issue 12's storm: a transaction behind a nonce gap waits for its sender, not for
    the primary. It must neither count as pending (which runs the backups' view-change
    timers) nor be the oldest waiting request; and what counts as includable is exactly
    what select() proposes."""
    p = pool()
    assert not p.has_includable() and p.oldest_includable() is None
    gap = tx(0, 5)
    add(p, gap)  # account 0's next nonce is 0: nonce 5 cannot be included
    assert not p.has_includable() and p.oldest_includable() is None
    assert select(p) == []
    ready = tx(1, 0)
    add(p, ready)
    assert p.has_includable() and p.oldest_includable() == ready.hash
    assert select(p) == [ready]
    for n in range(5):
        add(p, tx(0, n))
    assert p.oldest_includable() == ready.hash  # ready before account 0's nonce 0


def test_a_served_sender_goes_to_the_back_of_the_queue() -> None:
    p = pool()
    add(p, tx(0, 0))
    add(p, tx(0, 1))
    add(p, tx(1, 0))
    assert p.oldest_includable() == tx(0, 0).hash
    p.committed([tx(0, 0)], {KEYS[0].address: 1}, height=1)
    assert p.oldest_includable() == tx(1, 0).hash
    assert [t.sender_address for t in select(p)] == [KEYS[1].address, KEYS[0].address]


def test_selection_is_round_robin_between_senders() -> None:
    p = pool()
    for n in range(3 * SELECT_RUN):
        add(p, tx(0, n))
    add(p, tx(1, 0))
    chosen = select(p, SELECT_RUN + 1)
    assert tx(1, 0) in chosen


def test_selection_respects_byte_and_gas_budgets() -> None:
    p = pool()
    for n in range(5):
        add(p, tx(0, n))
    size = len(tx(0, 0).raw)
    assert len(select(p, max_bytes=2 * size)) == 2
    assert len(select(p, max_gas=3 * 21_000)) == 3


def test_commit_removes_included_and_stale_and_expires_with_final_statuses() -> None:
    p = pool(ttl_blocks=10)
    for n in range(4):
        add(p, tx(0, n))
    add(p, tx(1, 0, expiry=5))
    add(p, tx(2, 7), 7)
    block = select(p, 2)
    dropped = p.committed(block, {KEYS[0].address: 3}, height=1)  # nonce 2 went elsewhere
    assert [(d.tx_hash, d.reason) for d in dropped] == [(tx(0, 2).hash, DropReason.NONCE_USED)]
    assert p.dropped(tx(0, 2).hash) is not None
    assert [t.nonce for t in select(p) if t.sender == KEYS[0].public_key] == [3]
    assert tx(1, 0, expiry=5).hash in p
    dropped = p.committed([], {}, height=5)
    assert [d.reason for d in dropped] == [DropReason.EXPIRED]
    dropped = p.committed([], {}, height=10)
    assert {d.reason for d in dropped} == {DropReason.TTL} and len(p) == 0
    assert rejected(p, tx(1, 1, expiry=3), nonce=1, height=3) == "expired"


def test_a_nonce_read_before_a_commit_cannot_admit_a_zombie() -> None:
    """The race behind issue 12's stranded transactions: a resubmission's nonce is read
    off the event loop, the block with that nonce commits, then the add runs. The pool
    remembers committed nonces, so the stale read cannot admit an includable-looking
    transaction that no block can ever take."""
    p = pool()
    add(p, tx(0, 0))
    p.committed([tx(0, 0)], {KEYS[0].address: 1}, height=1)
    assert rejected(p, tx(0, 0, amount=2), nonce=0, height=1) == "nonce_too_low"
    assert not p.has_includable()


def test_transactions_behind_a_gap_leave_after_the_gap_ttl_with_a_reason() -> None:
    p = pool(gap_ttl_ms=1_000)
    add(p, tx(0, 1), now_ms=0)
    add(p, tx(0, 2), now_ms=500)
    assert p.expire_gaps(999, height=0) == []
    dropped = p.expire_gaps(1_000, height=0)
    assert [d.tx_hash for d in dropped] == [tx(0, 1).hash]
    assert dropped[0].reason is DropReason.GAP_TIMEOUT and "nonce 0" in dropped[0].detail
    add(p, tx(0, 0), now_ms=1_200)  # the sender refills the gap in time for nonce 2
    add(p, tx(0, 1, amount=2), now_ms=1_300)
    assert p.expire_gaps(1_500, height=0) == []
    assert [t.nonce for t in select(p)] == [0, 1, 2]
    assert p.dropped(tx(0, 1).hash) is not None  # the first nonce-1 transaction stays dropped


def test_dropping_a_head_puts_its_successors_behind_a_gap() -> None:
    p = pool(gap_ttl_ms=100)
    for n in range(3):
        add(p, tx(0, n))
    assert p.drop(tx(0, 0).hash, DropReason.NOT_INCLUDABLE, "not_permitted", 0) is not None
    assert not p.has_includable()
    assert {d.tx_hash for d in p.expire_gaps(100, 0)} == {tx(0, 1).hash, tx(0, 2).hash}
    assert len(p) == 0


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "select", "commit", "tick", "drop"]),
            st.integers(0, 5),
            st.integers(0, 12),
        ),
        max_size=60,
    )
)
def test_invariants_under_random_operations(ops: list[tuple[str, int, int]]) -> None:
    p = Mempool(max_txs=20, max_bytes=20 * 200, nonce_window=8, ttl_blocks=6, gap_ttl_ms=300)
    nonces = {k.address: 0 for k in KEYS}
    height = now = 0
    for op, key, n in ops:
        now += 50
        if op == "add":
            with contextlib.suppress(TxRejected):
                add(p, tx(key, n), nonces[KEYS[key].address], height, now)
        elif op == "drop":
            hashes = p.pending_hashes()
            if hashes:
                p.drop(hashes[n % len(hashes)], DropReason.NOT_INCLUDABLE, "test", height)
        elif op == "tick":
            p.expire_gaps(now, height)
        else:
            chosen = select(p, n + 1)
            by_sender: dict[bytes, list[int]] = {}
            for t in chosen:
                by_sender.setdefault(t.sender_address, []).append(t.nonce)
            for sender, seq in by_sender.items():
                assert seq == list(range(nonces[sender], nonces[sender] + len(seq))), (
                    "a proposal takes each sender's consecutive nonces from its next one"
                )
            if op == "commit":
                height += 1
                after = {s: seq[-1] + 1 for s, seq in by_sender.items()}
                nonces.update(after)
                p.committed(chosen, after, height)
        stats = p.statistics()
        assert stats.transactions <= 20 and stats.bytes <= 20 * 200
        assert stats.bytes == sum(len(p.get(h).raw) for h in p.pending_hashes())  # type: ignore[union-attr]
        includable = [
            h
            for h in p.pending_hashes()
            if (t := p.get(h)) is not None and t.nonce == nonces[t.sender_address]
        ]
        assert p.has_includable() == bool(includable)
        runs = 0
        for k in KEYS:
            n = nonces[k.address]
            while any(
                (t := p.get(h)) is not None and t.sender == k.public_key and t.nonce == n
                for h in p.pending_hashes()
            ):
                n += 1
            runs += n - nonces[k.address]
        assert stats.includable == runs, (
            "the includable count is each sender's run from its next nonce"
        )
        assert (p.oldest_includable() is None) == (not includable)
        for h in p.pending_hashes():
            t = p.get(h)
            assert t is not None and t.nonce >= nonces[t.sender_address]


def test_under_backpressure_a_resubmission_is_told_what_it_is() -> None:
    """Backpressure applies after the duplicate and nonce checks: a client resending what
    the pool already holds, or a used nonce, hears that (and the node can answer with the
    committed result), not a 'busy' that invites it to retry forever."""
    p = pool()
    t = tx(0, 0)
    add(p, t)
    with pytest.raises(TxRejected) as info:
        p.add(AdmittedTx(t), 0, height=0, now_ms=0, client_limit=0)
    assert info.value.code == "duplicate"
    with pytest.raises(TxRejected) as info:
        p.add(AdmittedTx(tx(1, 0)), 1, height=0, now_ms=0, client_limit=0)
    assert info.value.code == "nonce_too_low"
    with pytest.raises(TxRejected) as info:
        p.add(AdmittedTx(tx(1, 1)), 1, height=0, now_ms=0, client_limit=0)
    assert info.value.code == "busy"
