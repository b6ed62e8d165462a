"""The `quorum bench` program: load a running network through its HTTP API and measure it.

What it measures (DESIGN sections 6 and 8, issue 6): committed throughput of signed
transactions on ALL nodes, submit-to-commit latency, and this machine's Ed25519
verification rate, which bounds throughput at ``verify_per_s * cores / validators``
(every validator verifies every client signature once).

Theory of operation, in phases (1-2 in :mod:`ledger.bench.plan`, 3-4 in
:mod:`ledger.bench.load`, 5 in :mod:`ledger.bench.report`; this module runs them):

1. **Setup** (blocking client, not timed). Read every node's status (unreachable: exit 5),
   time ``crypto.keys.verify`` on one core, pick the sender accounts (the testnet's funded
   accounts; when ``--accounts`` asks for more, fresh keys funded from them by transfers
   that are waited for), and for ``--kind contract`` deploy one token contract from the
   first sender and hand every other sender a token balance (waited for). The bench then
   calls ``transfer(next sender, 1)`` on that one shared token, so every call touches the
   same contract's storage, as a real token's users would.
2. **Pre-signing** (not timed: signing is not what we measure). Each sender gets its own
   run of nonces starting at its committed nonce; transfers go to the next sender. How
   many: rate x time (open loop), 0.6 x the verification ceiling x time (closed loop), or
   exactly ``--max-txs``; at most a million (about 250 bytes each in memory). The report
   says ``exhausted`` when the load used them all before the time was up. Senders are
   split across nodes (sender ``s`` always goes to node ``s mod n``) so each node sees
   its senders' nonces in order; batches of ``--batch`` transactions alternate between
   nodes round-robin. Signing uses every core (fork) when there is a lot of it.
3. **Load.** ``--clients`` trio tasks, each with its own :class:`AsyncQuorumClient` per
   node. Closed loop (default): a client posts a batch with ``wait: true`` and posts its
   next one when the node answers that the batch committed, so at most clients x batch
   transactions are outstanding (default 8 x 250: on a 2-core machine bigger windows
   make bigger blocks and lower throughput). Open loop (``--rate``): batches leave on
   the clock whatever happened to earlier ones (each still with ``wait: true``, in its
   own task); the batch shrinks to ``rate / 50`` so that requests leave smoothly, at
   least 50 a second. Refusals that are the node saying "later" (``busy``,
   ``sender_busy``, ``mempool_full``, nonce too far ahead, anything with
   ``retry_after_ms``, HTTP 429/503, transport errors) are posted again after
   ``max(50 ms, retry_after_ms)`` from a per-node retry queue (one worker per node,
   posts that do not wait for commits: the followers time them), and while a sender has
   a transaction in that queue its later ones join it behind (``held_back``), so a
   sender's nonce sequence never gets a hole; refusals are counted by code
   (``refused``), re-posts in ``retries``.
4. **Latency and following.** A transaction's commit time is when the node it was sent
   to answered that it committed (the ``wait: true`` answer: what a client sees, at no
   polling cost to the nodes). One background task per node polls ``GET /v1/status``
   (every 100 ms on the first node, 250 ms on the others) and records when each height
   first appeared: that times the throughput window, and it is the commit time of a
   transaction whose answer timed out (``latency_from_answers`` counts the others).
5. **Drain and audit.** After the load, the first node's blocks since the start are
   walked until every accepted transaction is found (or ``--drain-timeout`` passes: the
   rest are ``lost``); then every node is walked to the same height, checking that the
   nodes hold the same block hashes and all accepted transactions.

Figures: ``tx_per_s`` = accepted transactions submitted after the warmup and committed,
divided by the time from the first of them being submitted to the last of them being
committed on every node (so the drain counts). Latency percentiles cover the same
transactions, from their first submission (what a client sees, retries included);
``accepted_p50_ms`` / ``accepted_p99_ms`` from the post the node accepted (what the node
answers for once it took a transaction). Exit codes: 0 ok, 1 transactions lost or failed (or nodes disagree), 5 a
node unreachable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from rich.console import Console

from ledger.bench.load import LiveView, LoadRun
from ledger.bench.plan import BenchError, BenchOptions, Plan, prepare
from ledger.bench.report import (
    FOLLOW_FIRST_S,
    FOLLOW_OTHERS_S,
    Walk,
    report,
    sample_receipts,
    walk_blocks,
)
from ledger.client import AsyncQuorumClient
from ledger.light import LightClient


async def _run(opts: BenchOptions, plan: Plan, console: Console | None) -> dict[str, Any]:
    n = len(opts.nodes)
    clients = [
        [AsyncQuorumClient(url, timeout_s=30.0, max_connections=16) for url in opts.nodes]
        for _ in range(max(1, opts.clients))
    ]
    run = LoadRun(opts, plan, clients)
    run.heights = list(plan.start_heights)
    run.seen = [{} for _ in range(n)]
    try:
        return await _drive(run, console)
    finally:
        for row in clients:
            for client in row:
                await client.aclose()


async def _drive(run: LoadRun, console: Console | None) -> dict[str, Any]:
    opts, plan = run.opts, run.plan
    n = len(opts.nodes)
    total_s = opts.warmup_s + opts.duration_s
    walks = [Walk() for _ in range(n)]
    light = LightClient(opts.genesis) if opts.genesis is not None else None
    start = min(plan.start_heights)
    with LiveView(console, total_s) as view:
        async with trio.open_nursery() as background:
            for node in range(n):
                background.start_soon(
                    run.follow, node, FOLLOW_FIRST_S if node == 0 else FOLLOW_OTHERS_S
                )
            background.start_soon(run.ticker, view)
            for node in range(n):
                background.start_soon(run.retry_worker, node)

            run.t0 = trio.current_time()
            run.t_measure = run.t0 + opts.warmup_s
            run.t_load_end = run.t0 + total_s
            run.retry_deadline = run.t_load_end + opts.drain_timeout_s
            async with trio.open_nursery() as load:
                if opts.rate is None:
                    for c in range(opts.clients):
                        load.start_soon(run.closed_client, c)
                else:
                    load.start_soon(run.open_scheduler)
            t_load_done = trio.current_time()

            # Drain: walk the reference node (the first one, unless another is ahead of
            # it: a stalled node must not hide what the others committed) until every
            # accepted transaction is in one of its blocks.
            run.phase = "drain"
            ref = run.reference = max(range(n), key=lambda i: (run.heights[i], -i))
            drain_deadline = t_load_done + opts.drain_timeout_s
            # What the node already said it dropped will not come (it still counts as lost).
            outstanding = set(run.accepted).difference(run.dropped_hashes)
            run.drain_outstanding = len(outstanding)
            walked = start
            while outstanding and trio.current_time() < drain_deadline:
                head = run.heights[ref]
                if head > walked:
                    found = await walk_blocks(
                        clients_of(run, ref),
                        range(walked + 1, head + 1),
                        run.accepted,
                        walks[ref],
                        light,
                    )
                    outstanding.difference_update(found)
                    walked = head
                    run.drain_outstanding = len(outstanding)
                else:
                    await trio.sleep(FOLLOW_FIRST_S)
            final = max(start, max(walks[ref].ours.values(), default=walked))
            # Every node must reach the final height.
            while trio.current_time() < drain_deadline and min(run.heights) < final:
                await trio.sleep(FOLLOW_FIRST_S)
            t_drained = trio.current_time()
            run.phase = "done"
            background.cancel_scope.cancel()
        view.update("done ", total_s, f"{len(run.accepted) - len(outstanding):,} committed")

    async with trio.open_nursery() as nursery:
        for node in range(n):
            if node == ref:
                continue
            # Normally every node is walked to the final height; when transactions are
            # missing, each node to its own head, so the report shows what each holds.
            top = run.heights[node] if outstanding else min(final, run.heights[node])
            nursery.start_soon(
                walk_blocks,
                clients_of(run, node),
                range(start + 1, top + 1),
                run.accepted,
                walks[node],
                light,
            )
    unreachable = [url for url, w in zip(opts.nodes, walks, strict=True) if w.error]
    # The reference node may have been walked past the final height: trim it.
    for h in [h for h in walks[ref].block_hashes if h > final]:
        del walks[ref].block_hashes[h]
        del walks[ref].tx_counts[h]
    failed_sample = await sample_receipts(run, walks[ref])
    return report(run, walks, start, final, t_load_done, t_drained, unreachable, failed_sample)


def clients_of(run: LoadRun, node: int) -> AsyncQuorumClient:
    return run.clients[0][node]


def run_bench(
    opts: BenchOptions,
    console: Console | None,
    note: Callable[[str], None],
    *,
    before_load: Callable[[Plan], None] | None = None,
) -> dict[str, Any]:
    """Setup, pre-sign, load, drain, audit; the report document (see module docstring).

    ``before_load`` is called between the setup and the load (a harness that runs the
    bench as one phase of a scenario reads the nodes there).
    """
    plan = prepare(opts, note)
    if before_load is not None:
        before_load(plan)
    note(
        f"{plan.presigned:,} transactions ready in {plan.sign_s:.1f} s; "
        f"{opts.mode} loop for {opts.warmup_s + opts.duration_s:g} s against {len(opts.nodes)} nodes"
    )
    try:
        return trio.run(_run, opts, plan, console)
    except BaseExceptionGroup as group:
        error = _bench_error(group)
        if error is not None:
            raise error from None
        raise


def _bench_error(error: BaseException) -> BenchError | None:
    """The first BenchError inside (nested) exception groups, if any."""
    if isinstance(error, BenchError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _bench_error(inner)
            if found is not None:
                return found
    return None
