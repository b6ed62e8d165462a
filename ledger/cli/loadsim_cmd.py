"""`quorum sim-load`: the node engine under overload in the load simulator.

Runs n validators' real engines (consensus, mempool, proposer, execution) on virtual time
and virtual CPUs under a client burst (ledger/loadsim/world.py), for several seeds, and
reports goodput, latency, refusals, view changes and anything accepted but left behind.
Exit status 1 when a seed changed view with every validator honest, or stranded an
accepted transaction without a final status.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from ledger.cli.output import (
    EXIT_ERROR,
    EXIT_USAGE,
    CommandError,
    Output,
    command_errors,
    json_option,
)

#: Largest validator set simulated (every engine runs in this process).
MAX_LOAD_VALIDATORS = 16


def _human(doc: dict[str, Any]) -> Any:
    def render(console: Console) -> None:
        for r in doc["runs"]:
            console.print(
                f"seed {r['seed']}: goodput {r['goodput_per_s']} tx/s, accepted {r['accepted']}, "
                f"committed {r['committed']}, refused (retry) {r['refused_backpressure']}, "
                f"ready p50/p99 {r['ready_p50_ms']}/{r['ready_p99_ms']} ms, view changes "
                f"{r['view_changes_burst']} in burst + {r['view_changes_idle']} idle, "
                f"stranded {r['stranded']}, behind gaps {r['behind_gaps']}, "
                f"dropped {r['dropped']}, probe {r['probe_ms']} ms"
            )
        console.print(
            f"{doc['seeds']} seeds: view changes {doc['view_changes']}, stranded {doc['stranded']}"
        )

    return render


@click.command("sim-load")
@click.option("--seeds", type=int, default=3, show_default=True, help="How many seeds to run.")
@click.option("--seed-start", type=int, default=0, show_default=True, help="First seed.")
@click.option("--validators", type=int, default=4, show_default=True, help="Validators (n).")
@click.option("--rate", type=int, default=2_400, show_default=True, help="Offered tx/s.")
@click.option("--burst-ms", type=int, default=10_000, show_default=True, help="Burst length.")
@click.option("--idle-ms", type=int, default=45_000, show_default=True, help="Idle after it.")
@click.option("--senders", type=int, default=300, show_default=True, help="Client accounts.")
@json_option
@command_errors
def sim_load(
    seeds: int,
    seed_start: int,
    validators: int,
    rate: int,
    burst_ms: int,
    idle_ms: int,
    senders: int,
    as_json: bool,
) -> None:
    """Simulate the node engine under a burst above capacity: goodput, latency, view changes."""
    from ledger.loadsim.world import LoadParams, Workload, run_load

    if not 4 <= validators <= MAX_LOAD_VALIDATORS:
        raise CommandError(f"--validators must be in 4..{MAX_LOAD_VALIDATORS}", EXIT_USAGE)
    if seeds < 1 or seed_start < 0 or rate < 1 or burst_ms < 100 or idle_ms < 0 or senders < 1:
        raise CommandError(
            "--seeds, --rate, --senders >= 1, --burst-ms >= 100, --idle-ms, --seed-start >= 0",
            EXIT_USAGE,
        )
    params = LoadParams(
        validators=validators,
        workload=Workload(senders=senders, rate_per_s=rate, burst_ms=burst_ms, idle_ms=idle_ms),
    )
    out = Output(as_json)
    runs = []
    for seed in range(seed_start, seed_start + seeds):
        out.note(f"seed {seed} ...")
        runs.append(run_load(seed, params).to_json())
    doc = {
        "seeds": seeds,
        "validators": validators,
        "rate_per_s": rate,
        "view_changes": sum(r["view_changes_burst"] + r["view_changes_idle"] for r in runs),
        "stranded": sum(r["stranded"] for r in runs),
        "runs": runs,
    }
    out.emit(doc, _human(doc))
    if doc["view_changes"] or doc["stranded"]:
        raise SystemExit(EXIT_ERROR)
