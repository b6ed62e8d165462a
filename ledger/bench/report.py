"""After a `quorum bench` run: walking every node's blocks to find the transactions it
submitted, sampling their receipts, and the figures (throughput, latency percentiles,
the timeline, the per-node audit) that ``quorum bench`` prints.

Never: count a transaction committed that was not found in a block, or report a latency
for one that has neither a commit answer nor a block time.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio

from ledger.client import AsyncQuorumClient, ClientError
from ledger.light import LightClient, VerificationError

if TYPE_CHECKING:
    from ledger.bench.load import LoadRun

#: Status polling for progress, throughput and the drain (latency comes from the answers).
FOLLOW_FIRST_S: Final = 0.1
FOLLOW_OTHERS_S: Final = 0.25
WALK_CONCURRENCY: Final = 8
RECEIPT_SAMPLE: Final = 64
#: Senders listed in a report's ``lost_detail`` (those with the most transactions lost).
MAX_LOST_DETAIL: Final = 8


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank method; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# Pre-signing happens in worker processes when there is a lot of it (it is CPU-bound and
# not what we measure). A job: (seed, chain_id, first nonce, count, payload spec, gas).


@dataclass(slots=True)
class Walk:
    """What one node's blocks in the window hold."""

    block_hashes: dict[int, str] = field(default_factory=dict)
    tx_counts: dict[int, int] = field(default_factory=dict)
    ours: dict[bytes, int] = field(default_factory=dict)  # our tx hash -> height
    #: Blocks whose certificate and transaction list verified against the genesis.
    verified: int = 0
    error: str | None = None


async def walk_blocks(
    client: AsyncQuorumClient,
    heights: range,
    accepted: dict[bytes, float],
    into: Walk,
    light: LightClient | None = None,
) -> list[bytes]:
    """Fetch the blocks at ``heights`` (a few at a time); returns our hashes found.

    With ``light``, a block counts only once its commit certificate and transaction list
    verify against the genesis; one that does not is an error, never a commit.
    Never raises (trio would wrap it in an exception group): failures go to ``into.error``.
    """
    limiter = trio.CapacityLimiter(WALK_CONCURRENCY)
    found: list[bytes] = []

    async def one(h: int) -> None:
        try:
            async with limiter:
                block = await client.block(h)
        except ClientError as exc:
            into.error = str(exc)
            return
        if block is None:
            into.error = f"{client.base_url} has no block {h}"
            return
        if light is not None:
            try:
                light.verify_block(block)
            except VerificationError as exc:
                into.error = f"{client.base_url}: block {h} does not verify: {exc}"
                return
            into.verified += 1
        into.block_hashes[h] = str(block["hash"])
        into.tx_counts[h] = int(block["header"]["tx_count"])
        for text in block["transactions"]:
            digest = bytes.fromhex(text)
            if digest in accepted:
                into.ours[digest] = h
                found.append(digest)

    async with trio.open_nursery() as nursery:
        for h in heights:
            nursery.start_soon(one, h)
    return found


async def sample_receipts(run: LoadRun, walk: Walk) -> tuple[int, int]:
    """Look up a random sample of committed transactions: (checked, failed)."""
    committed = list(walk.ours)
    if not committed:
        return 0, 0
    sample = random.Random(0).sample(committed, min(RECEIPT_SAMPLE, len(committed)))
    failed = 0
    checked = 0
    client = run.clients[0][run.reference]
    for digest in sample:
        try:
            found = await client.transaction(digest)
        except ClientError:
            continue
        checked += 1
        if found is None or found.get("status") != "committed":
            failed += 1
            run.failed_hashes.add(digest)
    return checked, failed


def lost_detail(run: LoadRun, committed: Collection[bytes]) -> list[dict[str, Any]]:
    """Where the lost transactions wait, per sender: how many of its accepted transactions
    did not commit, the lowest such nonce, and the lowest nonce below that which did not
    commit either (the hole they wait behind; None: the node held every nonce below) with
    what the bench knows of it: ``accepted``, ``refused`` (for now, posted again),
    ``dropped`` (by the node after acceptance) or ``not accepted``."""
    nonces_of: dict[int, dict[int, bytes]] = {}
    for batch in run.plan.batches:
        for digest, sender, nonce in zip(batch.hashes, batch.senders, batch.nonces, strict=True):
            nonces_of.setdefault(sender, {})[nonce] = digest
    detail: list[dict[str, Any]] = []
    for sender, nonces in nonces_of.items():
        lost = [n for n, d in nonces.items() if d in run.accepted and d not in committed]
        if not lost:
            continue
        first = min(lost)
        below = [n for n, d in nonces.items() if n < first and d not in committed]
        hole = min(below) if below else None
        state = None
        if hole is not None:
            digest = nonces[hole]
            state = (
                "dropped"
                if digest in run.dropped_hashes
                else "accepted"
                if digest in run.accepted
                else "refused"
                if digest in run.refused_hashes
                else "not accepted"
            )
        detail.append(
            {
                "sender": sender,
                "lost": len(lost),
                "first_lost_nonce": first,
                "first_lost_dropped": nonces[first] in run.dropped_hashes,
                "hole_nonce": hole,
                "hole": state,
                "hole_tx": None if hole is None else nonces[hole].hex(),
            }
        )
    detail.sort(key=lambda d: (-d["lost"], d["sender"]))
    return detail[:MAX_LOST_DETAIL]


def commit_time_all(run: LoadRun, height: int) -> float | None:
    times = [seen.get(height) for seen in run.seen]
    if any(t is None for t in times):
        return None
    return max(t for t in times if t is not None)


def report(
    run: LoadRun,
    walks: list[Walk],
    start: int,
    final: int,
    t_load_done: float,
    t_drained: float,
    unreachable: list[str],
    failed_sample: tuple[int, int],
) -> dict[str, Any]:
    opts, plan = run.opts, run.plan
    accepted = run.accepted
    ref = run.reference
    first_walk = walks[ref]
    seen0 = run.seen[ref]

    # Latency and throughput over the transactions submitted after the warmup.
    latencies: list[float] = []
    #: The same transactions, from the post the node accepted (not the first one).
    accept_latencies: list[float] = []
    measured_first = math.inf
    measured_last_height = start
    by_submit: dict[int, list[float]] = {}
    for digest, height in first_walk.ours.items():
        t_submit = accepted[digest]
        if t_submit < run.t_measure:
            continue
        t_commit = run.answered.get(digest, seen0.get(height))
        if t_commit is None:
            continue
        latency = t_commit - t_submit
        latencies.append(latency)
        accept_latencies.append(t_commit - run.accepted_post.get(digest, t_submit))
        measured_first = min(measured_first, t_submit)
        measured_last_height = max(measured_last_height, height)
        by_submit.setdefault(int(t_submit - run.t0), []).append(latency)
    latencies.sort()
    accept_latencies.sort()
    end_all = commit_time_all(run, measured_last_height) or t_drained
    if latencies and end_all is not None and end_all > measured_first:
        elapsed = end_all - measured_first
        tx_per_s = len(latencies) / elapsed
    else:
        elapsed = 0.0
        tx_per_s = 0.0

    committed_per_node = [sum(1 for _ in w.ours) for w in walks]
    committed = min(committed_per_node) if committed_per_node else 0
    reference = first_walk.block_hashes
    # Agreement: no two nodes hold different blocks at the same height (a node that lags
    # is not a disagreement; what it lacks shows up in committed_per_node and lost).
    forks = sorted(
        h
        for w in walks
        for h, digest in w.block_hashes.items()
        if h in reference and digest != reference[h]
    )
    agree = not forks
    lost = len(accepted) - committed
    cores = os.cpu_count() or 1
    ceiling = plan.verify_per_s * cores / max(1, plan.validators)

    # Throughput and latency over time, in one-second bins of the bench clock.
    commits_per_bin: Counter[int] = Counter()
    for h, count in first_walk.tx_counts.items():
        t = seen0.get(h)
        if t is not None:
            commits_per_bin[int(t - run.t0)] += count
    last_bin = max([*commits_per_bin, *by_submit, 0])
    timeline = []
    for b in range(last_bin + 1):
        lat = sorted(by_submit.get(b, []))
        timeline.append(
            {
                "t_s": b,
                "committed": commits_per_bin.get(b, 0),
                "p50_ms": round(percentile(lat, 0.5) * 1000, 1) if lat else None,
                "p99_ms": round(percentile(lat, 0.99) * 1000, 1) if lat else None,
            }
        )

    blocks = len(reference)
    total_block_txs = sum(first_walk.tx_counts.values())
    checked, failed_sampled = failed_sample

    def ms(q: float) -> float:
        return round(percentile(latencies, q) * 1000, 1)

    return {
        "tx_per_s": round(tx_per_s, 1),
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else 0.0,
        "mean_ms": round(sum(latencies) / len(latencies) * 1000, 1) if latencies else 0.0,
        "accepted_p50_ms": round(percentile(accept_latencies, 0.5) * 1000, 1),
        "accepted_p99_ms": round(percentile(accept_latencies, 0.99) * 1000, 1),
        "accepted_max_ms": round(accept_latencies[-1] * 1000, 1) if accept_latencies else 0.0,
        "submitted": run.submitted,
        "accepted": len(accepted),
        "rejected": sum(run.rejected.values()),
        "rejected_codes": dict(sorted(run.rejected.items())),
        "refused": dict(sorted(run.refused.items())),
        "refused_total": sum(run.refused.values()),
        "refused_txs": len(run.refused_hashes),
        "dropped": dict(sorted(run.dropped.items())),
        "committed": committed,
        "committed_per_node": committed_per_node,
        "failed": len(run.failed_hashes),
        "receipts_sampled": checked,
        "lost": lost,
        "lost_detail": lost_detail(run, first_walk.ours) if lost > 0 else [],
        "agree": agree,
        # Commits above are counted from blocks whose certificates verified against the
        # genesis (when the bench knows it: a testnet's, or --genesis).
        "blocks_verified": sum(w.verified for w in walks),
        "verified": opts.genesis is not None,
        "walk_errors": [w.error for w in walks if w.error],
        "forked_heights": forks[:10],
        "height_per_node": [max(w.block_hashes, default=start) for w in walks],
        "measured": len(latencies),
        "measured_s": round(elapsed, 3),
        "validators": plan.validators,
        "cores": cores,
        "verify_per_s": round(plan.verify_per_s, 1),
        "ceiling_tx_per_s": round(ceiling, 1),
        "ceiling_fraction": round(tx_per_s / ceiling, 4) if ceiling else 0.0,
        "duration_s": opts.duration_s,
        "warmup_s": opts.warmup_s,
        "load_s": round(t_load_done - run.t0, 3),
        "drain_s": round(t_drained - t_load_done, 3),
        "kind": opts.kind,
        "mode": opts.mode,
        "rate": opts.rate,
        "offered_tx_per_s": round(run.submitted / max(1e-9, t_load_done - run.t0), 1),
        "clients": opts.clients,
        "batch": opts.effective_batch(),
        "api": "msgpack" if opts.binary else "json",
        "accounts": len(plan.senders),
        "accounts_created": plan.created_accounts,
        "nodes": list(opts.nodes),
        "unreachable": unreachable,
        "contract": plan.contract.hex() if plan.contract else None,
        "gas_limit": plan.gas_limit,
        "start_height": start,
        "end_height": final,
        "blocks": blocks,
        "avg_block_txs": round(total_block_txs / blocks, 1) if blocks else 0.0,
        "retries": run.retries,
        "held_back": run.held_back,
        "accepted_on_a_later_post": len(run.accepted_post),
        "transport_errors": run.transport_errors,
        "late_batches": run.late_batches,
        "presigned": plan.presigned,
        "exhausted": run.exhausted,
        "sign_s": round(plan.sign_s, 3),
        "setup_s": round(plan.setup_s, 3),
        "reference_node": opts.nodes[ref],
        "latency_from_answers": sum(1 for d in run.accepted if d in run.answered),
        "latency_resolution_ms": (FOLLOW_FIRST_S if ref == 0 else FOLLOW_OTHERS_S) * 1000,
        "failed_sampled": failed_sampled,
        "timeline": timeline,
    }
