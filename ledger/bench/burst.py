"""`quorum bench burst`: issue 12's overload scenario against a running network, as one
benchmark that prints its figures and whether each "Done when" criterion held.

Phases, one after the other, on the same accounts:

1. **Capacity.** A closed-loop :func:`~ledger.bench.run.run_bench` for ``capacity_s``:
   its committed tx/s is the capacity C of this network on this machine, now.
2. **Burst.** An open-loop run at ``factor x C`` for ``duration_s`` (pre-signed for all
   of it: the plan signs rate x time), with a generous drain. Its goodput is the bench's
   committed tx/s (accepted, committed on every node, over first submission to last
   commit); latency percentiles are over the accepted transactions, from the post the
   node accepted to the commit (``p50_from_first_post_ms`` / ``p99_from_first_post_ms``:
   from their first submission, the client's own waiting included); refusals are
   counted by code. Every node's ``view`` and view-change counters are read just before the load
   (after the setup) and after the drain. The plan reads each sender's committed nonce
   when it signs, so this run starts where the capacity run's commits left each account.
3. **Idle.** Nothing submitted for ``idle_s``: every node's status each second; the
   views it went through (highest seen minus the one at the start) and, at the end,
   each mempool's size.
4. **Probe.** One signed transfer from the first funded account (its nonce read from
   the first node), submitted with ``wait`` to the first node: the time until the
   committed answer.

Never: submit anything during the idle watch, or call the scenario passed when a
figure could not be read (an unreachable node fails the criterion it was needed for).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from rich.console import Console

from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger.bench.plan import (
    DEFAULT_VERIFY_SAMPLES,
    TRANSFER_GAS,
    BenchError,
    BenchOptions,
    Plan,
)
from ledger.chain.types import Transaction, Transfer
from ledger.client import ClientError, QuorumClient

DEFAULT_CAPACITY_S: Final = 20.0
DEFAULT_FACTOR: Final = 3.0
DEFAULT_BURST_S: Final = 45.0
DEFAULT_IDLE_S: Final = 45.0
DEFAULT_BURST_DRAIN_S: Final = 60.0
IDLE_POLL_S: Final = 1.0
STATUS_TIMEOUT_S: Final = 5.0
PROBE_WAIT_MS: Final = 30_000
#: Issue 12's "Done when", on a real 4-validator testnet.
MIN_GOODPUT_RATIO: Final = 0.8
MAX_P99_MS: Final = 10_000.0
MAX_VIEW_CHANGES_BURST: Final = 1
MAX_PROBE_MS: Final = 2_000.0
VIEW_CHANGE_PREFIX: Final = "view_change."


@dataclass(frozen=True, slots=True)
class BurstOptions:
    """What `quorum bench burst` was asked to do."""

    nodes: tuple[str, ...]
    funded: tuple[PrivateKey, ...]
    capacity_s: float = DEFAULT_CAPACITY_S
    factor: float = DEFAULT_FACTOR
    duration_s: float = DEFAULT_BURST_S
    idle_s: float = DEFAULT_IDLE_S
    drain_timeout_s: float = DEFAULT_BURST_DRAIN_S
    verify_samples: int = DEFAULT_VERIFY_SAMPLES
    #: Blocks walked are verified against it when known (see BenchOptions.genesis).
    genesis: Genesis | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One node's view and view-change counters (``None``: it did not answer)."""

    view: int | None
    counters: dict[str, int]
    mempool: int | None = None


def _snapshot(client: QuorumClient) -> Snapshot:
    try:
        status = client.status()
    except ClientError:
        return Snapshot(None, {})
    counters = {
        str(k): int(v)
        for k, v in (status.get("counters") or {}).items()
        if str(k).startswith(VIEW_CHANGE_PREFIX)
    }
    view = status.get("view")
    mempool = (status.get("mempool") or {}).get("transactions")
    return Snapshot(
        None if view is None else int(view),
        counters,
        None if mempool is None else int(mempool),
    )


def _snapshots(clients: list[QuorumClient]) -> list[Snapshot]:
    return [_snapshot(c) for c in clients]


def _view_changes(before: list[Snapshot], after: list[Snapshot]) -> tuple[int | None, list[int]]:
    """Views each node went through, and the most of any node (``None``: unknown)."""
    per_node = []
    for b, a in zip(before, after, strict=True):
        per_node.append(-1 if b.view is None or a.view is None else a.view - b.view)
    if not per_node or min(per_node) < 0:
        return None, per_node
    return max(per_node), per_node


def _counter_deltas(before: list[Snapshot], after: list[Snapshot]) -> dict[str, int]:
    """The view-change counters summed over the nodes, after minus before."""
    total: dict[str, int] = {}
    for b, a in zip(before, after, strict=True):
        for key, value in a.counters.items():
            delta = value - b.counters.get(key, 0)
            if delta:
                total[key] = total.get(key, 0) + delta
    return dict(sorted(total.items()))


def _idle_watch(
    clients: list[QuorumClient], idle_s: float, note: Callable[[str], None]
) -> dict[str, Any]:
    """Poll every node each second for ``idle_s`` with nothing submitted."""
    start = _snapshots(clients)
    highest = [s.view for s in start]
    end = start
    t_end = time.monotonic() + idle_s
    next_note = time.monotonic() + 10.0
    while True:
        now = time.monotonic()
        if now >= t_end:
            break
        time.sleep(min(IDLE_POLL_S, t_end - now))
        end = _snapshots(clients)
        for i, snap in enumerate(end):
            if snap.view is not None and highest[i] is not None:
                highest[i] = max(snap.view, highest[i] or 0)
        if time.monotonic() >= next_note:
            views = ", ".join("?" if s.view is None else str(s.view) for s in end)
            pools = ", ".join("?" if s.mempool is None else str(s.mempool) for s in end)
            note(f"idle: views {views}; mempools {pools}")
            next_note += 10.0
    per_node = [
        -1 if s.view is None or h is None or e.view is None else h - s.view
        for s, h, e in zip(start, highest, end, strict=True)
    ]
    return {
        "view_changes": None if not per_node or min(per_node) < 0 else max(per_node),
        "view_changes_per_node": per_node,
        "views_at_end": [s.view for s in end],
        "mempools": [s.mempool for s in end],
        "counters": _counter_deltas(start, end),
    }


def _probe(url: str, key: PrivateKey) -> dict[str, Any]:
    """One transfer from ``key`` to a fresh address, waited for on ``url``."""
    with QuorumClient(url, timeout_s=STATUS_TIMEOUT_S) as client:
        try:
            chain_id = str(client.status()["chain_id"])
            nonce = int(client.account(key.address)["nonce"])
        except ClientError as exc:
            return {"status": "unreachable", "error": str(exc), "ms": None}
        to = PrivateKey.generate().address
        tx = Transaction.create(key, chain_id, nonce, Transfer(to, 1), gas_limit=TRANSFER_GAS)
        started = time.perf_counter()
        try:
            (result,) = client.submit([tx], wait=True, timeout_ms=PROBE_WAIT_MS)
        except ClientError as exc:
            return {"status": "unreachable", "error": str(exc), "ms": None}
        ms = round((time.perf_counter() - started) * 1000, 1)
    return {
        "tx_hash": tx.hash.hex(),
        "nonce": nonce,
        "status": result.get("status"),
        "code": result.get("code"),
        "height": result.get("height"),
        "ms": ms,
    }


def _check(held: bool, value: Any, want: str) -> dict[str, Any]:
    return {"held": held, "value": value, "want": want}


def run_burst(
    opts: BurstOptions,
    console: Console | None,
    note: Callable[[str], None],
) -> dict[str, Any]:
    """The four phases (module docstring); the report with its ``checks``."""
    # Here, not at the top: the CLI reads this module's defaults without loading trio.
    from ledger.bench.run import run_bench

    note(f"burst 1/4: closed-loop capacity run, {opts.capacity_s:g} s")
    capacity_doc = run_bench(
        BenchOptions(
            opts.nodes,
            opts.funded,
            duration_s=opts.capacity_s,
            verify_samples=opts.verify_samples,
            genesis=opts.genesis,
        ),
        console,
        note,
    )
    capacity = float(capacity_doc["tx_per_s"])
    if capacity <= 0:
        raise BenchError("the capacity run committed nothing: no capacity to burst above")
    rate = round(opts.factor * capacity, 1)

    clients = [QuorumClient(url, timeout_s=STATUS_TIMEOUT_S) for url in opts.nodes]
    try:
        before: list[Snapshot] = []

        def snapshot_before(_plan: Plan) -> None:
            before.extend(_snapshots(clients))

        note(
            f"burst 2/4: open loop at {rate:,.1f} tx/s ({opts.factor:g} x {capacity:,.1f}) "
            f"for {opts.duration_s:g} s"
        )
        burst_doc = run_bench(
            BenchOptions(
                opts.nodes,
                opts.funded,
                duration_s=opts.duration_s,
                rate=rate,
                drain_timeout_s=opts.drain_timeout_s,
                verify_samples=opts.verify_samples,
                genesis=opts.genesis,
            ),
            console,
            note,
            before_load=snapshot_before,
        )
        after = _snapshots(clients)
        burst_views, burst_views_per_node = _view_changes(before, after)

        note(f"burst 3/4: idle watch, {opts.idle_s:g} s with nothing submitted")
        idle = _idle_watch(clients, opts.idle_s, note)
    finally:
        for client in clients:
            client.close()

    note("burst 4/4: probe transfer")
    probe = _probe(opts.nodes[0], opts.funded[0])

    goodput = float(burst_doc["tx_per_s"])
    ratio = round(goodput / capacity, 4)
    # Latency of accepted transactions: from the post the node accepted to the commit
    # (a refused post was answered at once; what the client then waited is its own).
    p99 = float(burst_doc["accepted_p99_ms"])
    lost = int(burst_doc["lost"])
    mempools = idle["mempools"]
    probe_ms = probe["ms"]
    probe_ok = probe["status"] == "committed" and probe_ms is not None
    checks = {
        "goodput_ratio": _check(ratio >= MIN_GOODPUT_RATIO, ratio, f">= {MIN_GOODPUT_RATIO}"),
        "p99_ms": _check(p99 <= MAX_P99_MS, p99, f"<= {MAX_P99_MS:g}"),
        "lost": _check(lost == 0, lost, "== 0"),
        "view_changes_burst": _check(
            burst_views is not None and burst_views <= MAX_VIEW_CHANGES_BURST,
            burst_views,
            f"<= {MAX_VIEW_CHANGES_BURST}",
        ),
        "view_changes_idle": _check(idle["view_changes"] == 0, idle["view_changes"], "== 0"),
        "mempools_empty": _check(
            bool(mempools) and all(m == 0 for m in mempools), mempools, "all 0"
        ),
        "probe": _check(
            probe_ok and probe_ms <= MAX_PROBE_MS,
            probe_ms,
            f"committed in <= {MAX_PROBE_MS:g} ms",
        ),
    }
    return {
        "scenario": "burst",
        "passed": all(c["held"] for c in checks.values()),
        "capacity_tx_per_s": capacity,
        "factor": opts.factor,
        "offered_rate": rate,
        "late_batches": burst_doc["late_batches"],
        "goodput_tx_per_s": goodput,
        "goodput_ratio": ratio,
        "p50_ms": burst_doc["accepted_p50_ms"],
        "p99_ms": p99,
        "max_ms": burst_doc["accepted_max_ms"],
        "p50_from_first_post_ms": burst_doc["p50_ms"],
        "p99_from_first_post_ms": burst_doc["p99_ms"],
        "submitted": burst_doc["submitted"],
        "accepted": burst_doc["accepted"],
        "committed": burst_doc["committed"],
        "refused": burst_doc["refused"],
        "refused_total": burst_doc["refused_total"],
        "refused_txs": burst_doc["refused_txs"],
        "retries": burst_doc["retries"],
        "held_back": burst_doc["held_back"],
        "rejected": burst_doc["rejected_codes"],
        "dropped": burst_doc["dropped"],
        "lost": lost,
        "agree": burst_doc["agree"],
        "views_before_burst": [s.view for s in before],
        "views_after_burst": [s.view for s in after],
        "view_changes_burst": burst_views,
        "view_changes_burst_per_node": burst_views_per_node,
        "view_change_counters_burst": _counter_deltas(before, after),
        "view_changes_idle": idle["view_changes"],
        "view_changes_idle_per_node": idle["view_changes_per_node"],
        "view_change_counters_idle": idle["counters"],
        "views_after_idle": idle["views_at_end"],
        "mempools_after_idle": mempools,
        "probe_ms": probe_ms,
        "probe": probe,
        "checks": checks,
        "durations_s": {
            "capacity": opts.capacity_s,
            "burst": opts.duration_s,
            "burst_load": burst_doc["load_s"],
            "burst_drain": burst_doc["drain_s"],
            "idle": opts.idle_s,
        },
        "validators": burst_doc["validators"],
        "nodes": list(opts.nodes),
        "unreachable": burst_doc["unreachable"],
        "capacity_run": {
            k: capacity_doc[k]
            for k in ("tx_per_s", "p50_ms", "p99_ms", "committed", "lost", "refused", "retries")
        },
        "burst_timeline": burst_doc["timeline"],
    }
