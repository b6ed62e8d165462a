"""The `quorum chaos` runner: fault injection on real node processes, with invariants checked after every run.

What it is for: issue 7's promise — *nothing acknowledged is lost* — tested the way it
breaks in production. A testnet runs as real processes whose peer links all pass through
fault-injecting relays (:mod:`ledger.chaos.relay`); a load generator keeps transfers
flowing and records every transaction a node reported committed
(:mod:`ledger.chaos.load`); scenarios inject one family of faults each and heal
(:mod:`ledger.chaos.scenarios`); after every scenario the load stops and an auditor
walks every node's chain (:mod:`ledger.chaos.check`).

The modules, by job (``ledger/chaos/``; the click commands are ``ledger/cli/chaos_cmd.py``)::

    run.py          this runner: scenario registry, the loop, the figures
    net.py          the testnet under the harness: processes, configs, store faults
    relay.py        the trio relays: partitions, delays, stalls, cuts, replays
    load.py         the load generator and the ledger of reported commits
    check.py        the invariants: agreement, state roots, nothing lost
    scenarios.py    the fault scenarios (processes, links, stores, Byzantine peers)
    bad_input.py    the bad-input scenarios (API, peer port, client transactions)
    peer.py         the flooding impersonator and raw peer-port attacks
    attacks.py      client attacks and malformed HTTP requests

Theory of operation of the loop: the first pass runs every enabled scenario once in a
seeded order; later passes draw scenarios at random (seeded) until the time is up. Any
exception inside a scenario is recorded as a problem and the network is healed before the
audit. The run fails (exit 1) when a transaction is lost or divergent, or any invariant
(liveness after heal, refusal of corrupted stores, bounded memory, throughput floor, bad
input answered cleanly) was violated.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ledger.chaos.bad_input import api_fuzz, client_attack_scenario, peer_fuzz
from ledger.chaos.check import Auditor, AuditResult
from ledger.chaos.load import CommitLedger, LoadGenerator
from ledger.chaos.net import ChaosError, ChaosNet, open_chaos_net
from ledger.chaos.scenarios import (
    KNOWN_BUGS,
    ChaosContext,
    ScenarioResult,
    corrupt_store,
    duplicate_key,
    junk_flood,
    kill9_loop,
    link_chaos,
    partition,
    primary_pause,
    sigterm_restart,
    truncate_wal,
)

#: Receipts looked up per node per audit (every new transaction is checked in the blocks).
DEFAULT_RECEIPT_SAMPLE: Final = 200
MIN_ACCOUNTS: Final = 4
#: A flooder that only asks for catch-up blocks, 50 times a second per link.
CATCHUP_FLOOD: Final = ("--kinds", "blocks_wanted", "--blocks-wanted-per-s", "50")

Scenario = Callable[[ChaosContext], ScenarioResult]


def _scenarios(attack_skip: frozenset[str]) -> dict[str, Scenario]:
    return {
        "kill9_loop": lambda c: kill9_loop(c, rounds=3, double_kill_p=0.2, first_primary=False),
        "sigterm_restart": sigterm_restart,
        "primary_pause": lambda c: primary_pause(c, extra_pause_s=4.0),
        "partition_minority": lambda c: partition(c, "minority"),
        "partition_primary": lambda c: partition(c, "primary"),
        "partition_asymmetric": lambda c: partition(c, "asymmetric"),
        "partition_split": lambda c: partition(c, "split", hold_s=c.rng.uniform(3, 8)),
        "link_chaos": lambda c: link_chaos(c, seconds=10.0),
        "corrupt_truncate": lambda c: corrupt_store(c, "truncate"),
        "corrupt_flip_head": lambda c: corrupt_store(c, "flip_head"),
        "corrupt_flip_old_header": lambda c: corrupt_store(c, "flip_old_header"),
        "corrupt_flip_state": lambda c: corrupt_store(c, "flip_state"),
        "truncate_wal": truncate_wal,
        "duplicate_key": lambda c: duplicate_key(c, seconds=10.0),
        "junk_flood": lambda c: junk_flood(c, baseline_s=10.0, flood_s=15.0),
        "catchup_flood": lambda c: junk_flood(
            c, baseline_s=10.0, flood_s=15.0, name="catchup_flood", flood_args=CATCHUP_FLOOD
        ),
        "api_fuzz": lambda c: api_fuzz(c, requests=150),
        "peer_fuzz": lambda c: peer_fuzz(c, random_inputs=30),
        "client_attacks": lambda c: client_attack_scenario(c, skip=attack_skip),
    }


SCENARIO_NAMES: Final = tuple(_scenarios(frozenset()))


def default_scenarios(include_known_bugs: bool) -> list[str]:
    return [n for n in SCENARIO_NAMES if include_known_bugs or n not in KNOWN_BUGS]


@dataclass
class RunRecord:
    index: int
    scenario: str
    seconds: float
    result: ScenarioResult
    audit: AuditResult


@dataclass
class ChaosReport:
    """Everything `quorum chaos` prints."""

    seed: int
    duration_s: float
    started: float = field(default_factory=time.monotonic)
    runs: list[RunRecord] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    inputs: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, record: RunRecord) -> None:
        self.runs.append(record)
        self.faults.update(record.result.faults)
        self.inputs.update(record.result.inputs)

    def to_json(self, ledger: CommitLedger, auditor: Auditor) -> dict[str, Any]:
        recoveries = [r.result.recovery_s for r in self.runs if r.result.recovery_s is not None]
        problems = [
            f"run {r.index} {r.scenario}: {p}"
            for r in self.runs
            for p in [*r.result.problems, *r.audit.problems]
        ]
        floods = [r.result.details for r in self.runs if r.scenario == "junk_flood"]
        catchup = [r.result.details for r in self.runs if r.scenario == "catchup_flood"]
        lost = auditor.totals["lost"]
        divergent = auditor.totals["divergent"]
        return {
            "seed": self.seed,
            "duration_s": round(time.monotonic() - self.started, 1),
            "requested_duration_s": self.duration_s,
            "runs": len(self.runs),
            "scenarios": dict(Counter(r.scenario for r in self.runs)),
            "faults": dict(sorted(self.faults.items())),
            "faults_total": sum(self.faults.values()),
            "inputs": dict(sorted(self.inputs.items())),
            "inputs_total": sum(self.inputs.values()),
            "transactions": {
                "submitted": ledger.submitted,
                "committed": ledger.committed(),
                "checked": auditor.totals["txs"],
                "receipts_checked": auditor.totals["receipts"],
                "lost": lost,
                "divergent": divergent,
                "rejected_by_code": dict(ledger.rejected),
            },
            "blocks_checked": auditor.totals["blocks"],
            "certificates_verified": auditor.totals["certificates"],
            "lost": lost,
            "divergent": divergent,
            "max_recovery_s": round(max(recoveries), 2) if recoveries else None,
            "recovery_s": [round(r, 2) for r in recoveries],
            "liveness_failures": sum(
                1 for r in self.runs for p in r.result.problems if p.startswith("liveness")
            ),
            "flood": [
                {k: f.get(k) for k in ("baseline_tx_per_s", "flood_tx_per_s", "floor_ratio")}
                for f in floods
            ],
            "min_flood_floor_ratio": min((f.get("floor_ratio", 0.0) for f in floods), default=None),
            "catchup_flood": [
                {k: f.get(k) for k in ("baseline_tx_per_s", "flood_tx_per_s", "floor_ratio")}
                for f in catchup
            ],
            "problems": problems,
            "skipped_known_bugs": self.skipped,
            "per_run": [
                {
                    "run": r.index,
                    "scenario": r.scenario,
                    "seconds": round(r.seconds, 1),
                    "faults": dict(r.result.faults),
                    "recovery_s": None
                    if r.result.recovery_s is None
                    else round(r.result.recovery_s, 2),
                    "height": r.audit.height,
                    "txs_checked": r.audit.txs_checked,
                    "ok": not r.result.problems and r.audit.ok,
                    "details": _compact(r.result.details),
                }
                for r in self.runs
            ],
        }


def _compact(details: dict[str, Any]) -> dict[str, Any]:
    """Per-run details small enough to print (no per-message flood counters)."""
    out = dict(details)
    flood = out.get("flood")
    if isinstance(flood, dict):
        out["flood"] = {k: flood.get(k) for k in ("links", "messages_total", "bytes_out")}
    return out


def make_context(
    net: ChaosNet, seed: int, note: Callable[[str], None], *, load_pause_s: float = 0.0
) -> ChaosContext:
    """Split the testnet's accounts: senders for the load, one probe, one attacker.

    ``load_pause_s``: each sender waits this long between requests (a lighter load).
    """
    keys = net.account_keys
    if len(keys) < MIN_ACCOUNTS:
        raise ChaosError(
            f"the testnet needs at least {MIN_ACCOUNTS} funded accounts, has {len(keys)}"
        )
    ledger = CommitLedger()
    load = LoadGenerator(
        {n: net.rpc(n) for n in net.names}, keys[:-2], net.chain_id, ledger, pause_s=load_pause_s
    )
    return ChaosContext(
        net=net,
        ledger=ledger,
        load=load,
        auditor=Auditor(net, seed=seed),
        rng=random.Random(seed),
        probe_key=keys[-2],
        attacker_key=keys[-1],
        note=note,
    )


def run_one(
    ctx: ChaosContext,
    index: int,
    name: str,
    scenario: Scenario,
    *,
    receipt_sample: int | None = DEFAULT_RECEIPT_SAMPLE,
) -> RunRecord:
    """Run one scenario under load, heal, stop the load, audit every node."""
    started = time.monotonic()
    ctx.load.start()
    try:
        result = scenario(ctx)
    except Exception as exc:  # a scenario that could not finish is a finding, not a crash
        result = ScenarioResult(name)
        result.problems.append(
            f"scenario aborted: {type(exc).__name__}: {exc} "
            f"({''.join(traceback.format_exception(exc)[-2:]).strip()[:500]})"
        )
        try:
            ctx.heal_everything()
        except ChaosError as heal_error:
            result.problems.append(f"could not heal: {heal_error}")
    ctx.load.stop()
    for error in ctx.load.errors:
        result.problems.append(f"load generator: {error}")
    ctx.load.errors.clear()
    with ctx.ledger.lock:
        for rejection in ctx.ledger.unexpected:
            result.problems.append(f"a valid transfer was rejected: {rejection}")
        ctx.ledger.unexpected.clear()
    for error in ctx.net.relay.errors:
        result.problems.append(f"relay: {error}")
    ctx.net.relay.errors.clear()
    audit = ctx.auditor.audit(ctx.net.names, ctx.ledger, receipt_sample=receipt_sample)
    return RunRecord(index, name, time.monotonic() - started, result, audit)


def run_chaos(
    directory: Path,
    *,
    duration_s: float,
    seed: int,
    scenarios: list[str] | None = None,
    include_known_bugs: bool = False,
    note: Callable[[str], None] = lambda _: None,
) -> tuple[ChaosReport, dict[str, Any]]:
    """Run scenarios in a loop for ``duration_s`` against the testnet in ``directory``
    (created when absent); returns the report and its JSON figures."""
    skip = frozenset() if include_known_bugs else frozenset(KNOWN_BUGS)
    registry = _scenarios(skip)
    chosen = scenarios or default_scenarios(include_known_bugs)
    unknown = [s for s in chosen if s not in registry]
    if unknown:
        raise ChaosError(f"unknown scenarios: {', '.join(unknown)} (have: {', '.join(registry)})")
    report = ChaosReport(seed=seed, duration_s=duration_s)
    if not include_known_bugs:
        report.skipped = dict(KNOWN_BUGS)
    rng = random.Random(seed)
    first_pass = list(chosen)
    rng.shuffle(first_pass)
    with open_chaos_net(directory, seed=seed) as net:
        ctx = make_context(net, seed, note)
        end = time.monotonic() + duration_s
        index = 0
        while time.monotonic() < end:
            name = first_pass[index] if index < len(first_pass) else rng.choice(chosen)
            index += 1
            note(f"run {index}: {name}")
            record = run_one(ctx, index, name, registry[name])
            report.add(record)
            status = "ok" if not record.result.problems and record.audit.ok else "PROBLEM"
            note(
                f"run {index} {name}: {status}; recovery "
                f"{record.result.recovery_s if record.result.recovery_s is None else round(record.result.recovery_s, 1)} s; "
                f"{record.audit.summary()}"
            )
            for problem in [*record.result.problems, *record.audit.problems]:
                note(f"  problem: {problem}")
        figures = report.to_json(ctx.ledger, ctx.auditor)
    return report, figures


def failed(figures: dict[str, Any]) -> bool:
    return bool(figures["lost"] or figures["divergent"] or figures["problems"])
