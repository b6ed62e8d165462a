"""Running many seeds and reporting: ``run_seed``, ``run_seeds`` and :class:`SimReport`.

The report's ``trace_hash`` is SHA-256 over the per-seed trace hashes in seed order: the
same seeds and parameters give the same hash, in any process, on any machine. Every
failing seed comes with the exact ``quorum sim`` command that reproduces it.

House rule: no randomness or clock of its own; a seed and the parameters fully determine
a run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from consensus.sim.checker import Violation
from consensus.sim.model import SimParams
from consensus.sim.world import EpochStats, Simulation


@dataclass(frozen=True, slots=True)
class SeedResult:
    seed: int
    trace_hash: str
    commits: int
    violation_count: int
    violations: tuple[Violation, ...]
    finished_ms: int | None
    events: int
    plan: str
    #: What the epoch scenarios did (all zero without ``SimParams.epochs``).
    epochs: EpochStats = field(default_factory=EpochStats)

    def failure(self, params: SimParams) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "command": params.command(self.seed),
            "plan": self.plan,
            "violation_count": self.violation_count,
            "violations": [
                {"kind": v.kind, "time_ms": v.time_ms, "detail": v.detail} for v in self.violations
            ],
        }


@dataclass
class SimReport:
    params: SimParams
    seeds: int = 0
    seed_start: int = 0
    violations: int = 0
    commits: int = 0
    events: int = 0
    seeds_with_violations: int = 0
    violations_by_kind: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    seed_hashes: list[str] = field(default_factory=list)
    #: Virtual ms from start until everything committed, per finished seed.
    finish_ms: list[int] = field(default_factory=list)
    #: The epoch scenarios' counts, summed over the seeds.
    epochs: dict[str, int] = field(default_factory=dict)

    @property
    def trace_hash(self) -> str:
        digest = hashlib.sha256()
        for seed_hash in self.seed_hashes:
            digest.update(bytes.fromhex(seed_hash))
        return digest.hexdigest()

    def add(self, result: SeedResult) -> None:
        self.seeds += 1
        self.commits += result.commits
        self.events += result.events
        self.violations += result.violation_count
        self.seed_hashes.append(result.trace_hash)
        if result.finished_ms is not None:
            self.finish_ms.append(result.finished_ms)
        for name, count in asdict(result.epochs).items():
            self.epochs[name] = self.epochs.get(name, 0) + count
        if result.violation_count:
            self.seeds_with_violations += 1
            for violation in result.violations:
                self.violations_by_kind[violation.kind] = (
                    self.violations_by_kind.get(violation.kind, 0) + 1
                )
            self.failures.append(result.failure(self.params))

    def to_json(self) -> dict[str, Any]:
        finished = sorted(self.finish_ms)
        return {
            "seeds": self.seeds,
            "seed_start": self.seed_start,
            "validators": self.params.validators,
            "byzantine": self.params.byzantine,
            "violations": self.violations,
            "seeds_with_violations": self.seeds_with_violations,
            "violations_by_kind": dict(sorted(self.violations_by_kind.items())),
            "commits": self.commits,
            "events": self.events,
            "trace_hash": self.trace_hash,
            "seeds_finished": len(finished),
            "median_finish_ms": finished[len(finished) // 2] if finished else None,
            "max_finish_ms": finished[-1] if finished else None,
            **({"epochs": dict(self.epochs)} if self.params.epochs else {}),
            "failures": self.failures,
        }


def run_seed(seed: int, params: SimParams) -> SeedResult:
    """Run one seed to completion (everything committed after the heal, or the deadline)."""
    sim = Simulation(seed, params)
    sim.run()
    return SeedResult(
        seed=seed,
        trace_hash=sim.trace.hexdigest(),
        commits=sim.checker.commits,
        violation_count=sim.checker.violation_count,
        violations=tuple(sim.violations),
        finished_ms=sim.finished_at,
        events=sim.events,
        plan=sim.plan.describe(),
        epochs=sim.stats,
    )


def run_seeds(
    seeds: int,
    seed_start: int = 0,
    validators: int = 4,
    byzantine: int = 1,
    params: SimParams | None = None,
    results: Iterable[SeedResult] | None = None,
) -> SimReport:
    """Run ``seeds`` consecutive seeds from ``seed_start`` (or collect ``results`` computed
    elsewhere, e.g. in worker processes, in seed order)."""
    if params is None:
        params = SimParams(validators=validators, byzantine=byzantine)
    report = SimReport(params, seed_start=seed_start)
    source = (
        results
        if results is not None
        else (run_seed(s, params) for s in range(seed_start, seed_start + seeds))
    )
    for result in source:
        report.add(result)
    return report
