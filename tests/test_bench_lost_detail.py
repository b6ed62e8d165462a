"""`quorum bench`'s account of lost transactions (ledger/bench/report.py lost_detail): per
sender, how many accepted transactions did not commit and which nonce they wait behind."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ledger.bench.plan import Batch
from ledger.bench.report import MAX_LOST_DETAIL, lost_detail


def digest(sender: int, nonce: int) -> bytes:
    return f"{sender}:{nonce}".encode().ljust(32, b".")


def run_of(batches: list[Batch], **sets: set[bytes]) -> Any:
    accepted = {d: 0.0 for d in sets.get("accepted", set())}
    return SimpleNamespace(
        plan=SimpleNamespace(batches=batches),
        accepted=accepted,
        dropped_hashes=sets.get("dropped", set()),
        refused_hashes=sets.get("refused", set()),
    )


def batch(items: list[tuple[int, int]]) -> Batch:
    return Batch(
        node=0,
        raws=[b"" for _ in items],
        hashes=[digest(s, n) for s, n in items],
        senders=[s for s, _ in items],
        nonces=[n for _, n in items],
    )


def test_lost_transactions_name_the_hole_they_wait_behind() -> None:
    # Sender 1: 0..2 committed, 3 refused and never accepted, 4..6 accepted and stuck.
    # Sender 2: 0..1 committed, 2..3 accepted and stuck with nothing missing below.
    # Sender 3: everything committed.
    items = [(1, n) for n in range(7)] + [(2, n) for n in range(4)] + [(3, 0), (3, 1)]
    committed = {digest(1, n) for n in range(3)} | {digest(2, 0), digest(2, 1)}
    committed |= {digest(3, 0), digest(3, 1)}
    accepted = committed | {digest(1, n) for n in (4, 5, 6)} | {digest(2, 2), digest(2, 3)}
    run = run_of(
        [batch(items[:7]), batch(items[7:])],
        accepted=accepted,
        refused={digest(1, 3)},
        dropped={digest(1, 4)},
    )
    assert lost_detail(run, committed) == [
        {
            "sender": 1,
            "lost": 3,
            "first_lost_nonce": 4,
            "first_lost_dropped": True,
            "hole_nonce": 3,
            "hole": "refused",
            "hole_tx": digest(1, 3).hex(),
        },
        {
            "sender": 2,
            "lost": 2,
            "first_lost_nonce": 2,
            "first_lost_dropped": False,
            "hole_nonce": None,
            "hole": None,
            "hole_tx": None,
        },
    ]


def test_nothing_lost_lists_nobody_and_the_list_is_bounded() -> None:
    items = [(s, 0) for s in range(MAX_LOST_DETAIL + 5)] + [(s, 1) for s in range(3)]
    everything = {digest(s, n) for s, n in items}
    assert lost_detail(run_of([batch(items)], accepted=everything), everything) == []
    # Every sender's nonce 0 accepted and stuck: the most-lost senders first, at most MAX.
    stuck = run_of([batch(items)], accepted=everything)
    listed = lost_detail(stuck, set())
    assert len(listed) == MAX_LOST_DETAIL
    assert [d["sender"] for d in listed[:3]] == [0, 1, 2]  # two lost each, then one
    assert all(d["hole_nonce"] is None for d in listed)
