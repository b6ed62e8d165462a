"""`quorum sim`: run the deterministic PBFT simulator over many seeds.

Each seed draws its own faults (loss, duplication, reordering, partitions, crash-restarts,
timer skew) and Byzantine behaviour for up to --byzantine validators, runs n real replicas
in virtual time and checks the invariants at every step (consensus/sim/checker.py). With
--epochs each seed also draws validator-set changes (adds and removes) voted inside the
simulated chain, timed against view changes (consensus/sim/epochs.py). The
same options and seeds always give the same trace_hash. Exit status 1 when any invariant
was violated; every failing seed is listed with the command that reproduces it.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import click
from rich.console import Console

from consensus.quorum import max_faulty
from consensus.sim import SimParams, SimReport, run_seed, run_seeds
from ledger.cli.output import (
    EXIT_ERROR,
    EXIT_USAGE,
    CommandError,
    Output,
    command_errors,
    json_option,
)

#: Largest validator set the simulator accepts (it runs every replica in one process).
MAX_SIM_VALIDATORS = 31
#: Seeds per task handed to a worker process.
SEEDS_PER_TASK = 8


def _run(seeds: int, seed_start: int, params: SimParams, jobs: int) -> SimReport:
    seed_list = range(seed_start, seed_start + seeds)
    if jobs <= 1 or seeds <= 1:
        return run_seeds(seeds, seed_start, params=params)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(
            functools.partial(run_seed, params=params), seed_list, chunksize=SEEDS_PER_TASK
        )
        return run_seeds(seeds, seed_start, params=params, results=list(results))


def _human(doc: dict[str, Any]) -> Any:
    def render(console: Console) -> None:
        console.print(
            f"{doc['seeds']} seeds (from {doc['seed_start']}), {doc['validators']} validators, "
            f"{doc['byzantine']} byzantine (f = {doc['max_faulty']})"
        )
        kinds = ", ".join(f"{k} {v}" for k, v in doc["violations_by_kind"].items())
        console.print(
            f"commits {doc['commits']}, violations {doc['violations']}"
            + (f" in {doc['seeds_with_violations']} seeds ({kinds})" if doc["violations"] else "")
        )
        console.print(
            f"{doc['seconds']} s, {doc['seconds_per_seed']} s/seed, "
            f"{doc['commits_per_second']} simulated commits/s"
        )
        if "epochs" in doc:
            e = doc["epochs"]
            console.print(
                f"set changes {e['switches']} ({e['switch_view_changes']} certified across a "
                f"view change, {e['votes_in_view_change']} voted during one), "
                f"{e['zombie_messages']} messages from removed validators"
            )
        console.print(f"trace_hash {doc['trace_hash']}")
        for failure in doc["failures"][:10]:
            first = (
                failure["violations"][0] if failure["violations"] else {"kind": "?", "detail": ""}
            )
            console.print(
                f"[red]seed {failure['seed']}[/red]: {first['kind']}: {first['detail'][:200]}"
            )
            console.print(f"  reproduce: {failure['command']}")
        if len(doc["failures"]) > 10:
            console.print(f"... and {len(doc['failures']) - 10} more failing seeds (see --json)")

    return render


@click.command("sim")
@click.option("--seeds", type=int, default=100, show_default=True, help="How many seeds to run.")
@click.option("--seed-start", type=int, default=0, show_default=True, help="First seed.")
@click.option("--validators", type=int, default=4, show_default=True, help="Validators (n).")
@click.option(
    "--byzantine",
    type=int,
    default=None,
    help="Byzantine validators (default f; more than f must fail).",
)
@click.option(
    "--max-heal-ms",
    type=int,
    default=2500,
    show_default=True,
    help="Latest virtual time at which faults heal.",
)
@click.option(
    "--max-requests", type=int, default=24, show_default=True, help="Most client requests per seed."
)
@click.option(
    "--epochs",
    is_flag=True,
    help="Also draw validator-set changes (adds, removes) voted during the run.",
)
@click.option("--jobs", type=int, default=1, show_default=True, help="Worker processes.")
@json_option
@command_errors
def sim(
    seeds: int,
    seed_start: int,
    validators: int,
    byzantine: int | None,
    max_heal_ms: int,
    max_requests: int,
    epochs: bool,
    jobs: int,
    as_json: bool,
) -> None:
    """Run the PBFT simulator: faults, Byzantine validators, invariant checks, trace hash."""
    if not 1 <= validators <= MAX_SIM_VALIDATORS:
        raise CommandError(f"--validators must be in 1..{MAX_SIM_VALIDATORS}", EXIT_USAGE)
    f = max_faulty(validators)
    byzantine = f if byzantine is None else byzantine
    if not 0 <= byzantine < validators:
        raise CommandError("--byzantine must be in 0..validators-1", EXIT_USAGE)
    if seeds < 1 or seed_start < 0 or jobs < 1 or max_heal_ms < 100 or max_requests < 3:
        raise CommandError(
            "--seeds, --jobs >= 1, --seed-start >= 0, --max-heal-ms >= 100, --max-requests >= 3",
            EXIT_USAGE,
        )
    params = SimParams(
        validators=validators,
        byzantine=byzantine,
        max_heal_ms=max_heal_ms,
        max_requests=max_requests,
        epochs=epochs,
    )
    out = Output(as_json)
    out.note(f"running {seeds} seeds with {jobs} worker(s) ...")
    started = time.perf_counter()
    report = _run(seeds, seed_start, params, jobs)
    seconds = time.perf_counter() - started
    doc = report.to_json()
    doc["max_faulty"] = f
    doc["seconds"] = round(seconds, 3)
    doc["seconds_per_seed"] = round(seconds / seeds, 4)
    doc["commits_per_second"] = int(report.commits / seconds) if seconds > 0 else 0
    out.emit(doc, _human(doc))
    if report.violations:
        raise SystemExit(EXIT_ERROR)
