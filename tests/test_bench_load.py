"""The bench's client under backpressure, in process against a fake node: refused
transactions are posted again after ``retry_after_ms``, and a sender's later
transactions never overtake one the client knows was refused (ledger/bench/load.py)."""

from __future__ import annotations

import random
from typing import Any

import trio

from crypto.keys import PrivateKey
from ledger.bench.load import ABANDONED, LoadRun, RetryQueue, Ticket, Waiting
from ledger.bench.plan import Batch, BenchOptions, Plan, Stream, _build_batches

SENDERS = 6
PER_SENDER = 40
NODES = 2


def tx(sender: int, nonce: int) -> bytes:
    return f"{sender}:{nonce}".encode()


def parse(raw: bytes) -> tuple[int, int]:
    sender, nonce = raw.decode().split(":")
    return int(sender), int(nonce)


class FakeNode:
    """Refuses a share of what it is sent (``busy``, with retry_after_ms), or refuses one
    transaction for good; logs every post and every answer, in the order they happen."""

    def __init__(self, log: list[tuple[str, int, list[tuple[int, int]]]], seed: int) -> None:
        self.log = log
        self.rng = random.Random(seed)
        self.accepted: set[tuple[int, int]] = set()
        self.busy_share = 0.3
        self.final: dict[tuple[int, int], str] = {}

    async def submit(
        self, raws: list[bytes], *, wait: bool, timeout_ms: int, binary: bool
    ) -> list[Any]:
        assert binary  # the bench posts MessagePack by default (api_binary.py)
        items = [parse(r) for r in raws]
        post = len(self.log)
        self.log.append(("post", post, items))
        results: list[dict[str, Any]] = []
        refused = []
        for item in items:
            if item in self.final:
                results.append({"status": "rejected", "code": self.final[item]})
            elif item in self.accepted:
                results.append({"status": "rejected", "code": "duplicate"})
            elif self.rng.random() < self.busy_share:
                results.append({"status": "rejected", "code": "busy", "retry_after_ms": 20})
                refused.append(item)
            else:
                self.accepted.add(item)
                results.append({"status": "pending"})
        if wait:
            await trio.sleep(0.03)  # the commit the client waits for
        self.log.append(("answer", post, refused))
        return results


def make_run(node: FakeNode) -> LoadRun:
    streams: list[list[Stream]] = [[] for _ in range(NODES)]
    for s in range(SENDERS):
        raws = [tx(s, n) for n in range(PER_SENDER)]
        streams[s % NODES].append(Stream(s, 0, raws, raws))
    batches = _build_batches(streams, 10)
    key = PrivateKey(bytes(32))
    opts = BenchOptions(nodes=tuple(f"n{i}" for i in range(NODES)), funded=(key,), rate=100.0)
    plan = Plan("c", 4, (0,) * NODES, (key,), 0, None, 0, batches, 0, 0.0, 0.0, 1.0)
    return LoadRun(opts, plan, [[node] * NODES])  # type: ignore[list-item]


async def drive(run: LoadRun) -> None:
    run.t0 = trio.current_time()
    run.t_load_end = run.t0 + 1
    run.retry_deadline = run.t0 + 20
    async with trio.open_nursery() as background:
        for n in range(NODES):
            background.start_soon(run.retry_worker, n)
        async with trio.open_nursery() as load:
            for batch in run.plan.batches:
                load.start_soon(run.send, 0, batch, True)
                await trio.sleep(0.005)
        background.cancel_scope.cancel()


def overtakes(log: list[tuple[str, int, list[tuple[int, int]]]]) -> list[str]:
    """Posts of a sender's nonce made after the client learnt that an earlier nonce of
    it was refused, and before that one was posted again (or ahead of it in one post)."""
    problems = []
    outstanding: dict[int, set[int]] = {}  # sender -> refused nonces not yet posted again
    for kind, post, items in log:
        if kind == "answer":
            for s, n in items:
                outstanding.setdefault(s, set()).add(n)
            continue
        for s, n in items:
            earlier = [m for m in outstanding.get(s, ()) if m < n]
            if earlier:
                problems.append(f"post {post}: {s}:{n} while {s}:{min(earlier)} waits")
            outstanding.get(s, set()).discard(n)
    return problems


def test_refused_transactions_are_retried_in_nonce_order() -> None:
    log: list[tuple[str, int, list[tuple[int, int]]]] = []
    node = FakeNode(log, seed=1)
    run = make_run(node)
    trio.run(drive, run)
    assert len(run.accepted) == SENDERS * PER_SENDER
    assert node.accepted == {(s, n) for s in range(SENDERS) for n in range(PER_SENDER)}
    assert not run.rejected
    assert run.refused["busy"] > 0 and run.retries > 0 and run.held_back > 0
    assert run.retries == sum(run.refused.values())  # each refusal posted again once
    assert not overtakes(log)
    assert run.waiting() == 0


def test_a_final_refusal_abandons_the_senders_later_nonces() -> None:
    log: list[tuple[str, int, list[tuple[int, int]]]] = []
    node = FakeNode(log, seed=2)
    node.busy_share = 0.0
    node.final[(3, 5)] = "insufficient_funds"
    run = make_run(node)
    trio.run(drive, run)
    assert run.rejected["insufficient_funds"] == 1
    # Sender 3's nonces after 5 were either in flight already (taken) or never sent.
    sent_late = {n for kind, _, items in log if kind == "post" for s, n in items if s == 3}
    taken = {n for s, n in node.accepted if s == 3}
    assert run.rejected[ABANDONED] == PER_SENDER - 1 - len(taken)
    assert max(sent_late) < PER_SENDER - 1  # the tail of sender 3 never left
    assert len(run.accepted) == SENDERS * PER_SENDER - 1 - run.rejected[ABANDONED]


def test_retry_queue_posts_each_senders_due_run_in_nonce_order() -> None:
    async def main() -> None:
        queue = RetryQueue(0)
        ticket = Ticket()
        raws = [tx(s, n) for s in (0, 1) for n in range(4)]
        batch = Batch(0, raws, raws, [0] * 4 + [1] * 4, [0, 1, 2, 3] * 2)
        now = trio.current_time()
        # Added out of order; sender 0's nonce 2 is not due yet, so 3 waits behind it.
        for i, due in [(3, now), (1, now), (0, now), (2, now + 5), (5, now), (4, now)]:
            queue.add(Waiting(batch, i, due, ticket, posted=False))
        ready, next_due = queue.due(now, 10)
        assert [(batch.senders[w.index], w.nonce) for w in ready] == [
            (0, 0),
            (1, 0),
            (0, 1),
            (1, 1),
        ]
        assert next_due == now + 5
        limited, _ = queue.due(now, 3)
        assert len(limited) == 3
        for w in ready:
            queue.remove(w)
        assert queue.size == 2 and ticket.remaining == 2

    trio.run(main)
