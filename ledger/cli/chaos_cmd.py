"""`quorum chaos`: run fault-injection scenarios against a local testnet and print figures.

See :mod:`ledger.chaos.run` for what runs and docs/RELIABILITY.md for what it proves.
`quorum chaos-flood` (hidden) is the fake validator process a flood scenario starts
(:func:`ledger.chaos.peer.run_flood`); nobody types it.

Never: inject or check anything here; option parsing, the harness call and the printing.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ledger.chaos import peer
from ledger.chaos.net import ChaosError
from ledger.chaos.run import SCENARIO_NAMES, failed, run_chaos
from ledger.cli.output import EXIT_ERROR, CommandError, Output, command_errors, json_option
from ledger.testnet import DEFAULT_TESTNET_DIR, TestnetError


@click.command("chaos")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=DEFAULT_TESTNET_DIR,
    show_default=True,
    help="Testnet directory (a fresh testnet is created there when it holds none).",
)
@click.option(
    "--duration",
    type=click.FloatRange(1, 24 * 3600),
    default=60.0,
    show_default=True,
    help="Seconds to keep starting scenarios (the last one finishes after).",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for every random choice (default: random)."
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(SCENARIO_NAMES),
    help="Run only these scenarios (repeatable). Default: all but known bugs.",
)
@click.option(
    "--include-known-bugs",
    is_flag=True,
    help="Also run the scenarios and attacks that currently fail because of open bugs.",
)
@json_option
@command_errors
def chaos(
    directory: Path,
    duration: float,
    seed: int | None,
    scenarios: tuple[str, ...],
    include_known_bugs: bool,
    as_json: bool,
) -> None:
    """Inject faults into a live testnet under load; check nothing is lost or divergent.

    Kills, pauses and restarts validators, partitions and degrades their links, corrupts
    block stores, runs a second process with one validator's key, floods junk from a fake
    validator, and fuzzes the HTTP API, the peer port and client transactions. Exit 1 when
    a transaction reported committed is lost or divergent, or another invariant fails.
    """
    out = Output(as_json)
    chosen_seed = random.randrange(2**31) if seed is None else seed
    out.note(f"chaos: seed {chosen_seed}, {duration:.0f} s, testnet in {directory}")
    try:
        _, figures = run_chaos(
            directory,
            duration_s=duration,
            seed=chosen_seed,
            scenarios=list(scenarios) or None,
            include_known_bugs=include_known_bugs,
            note=out.note,
        )
    except (ChaosError, TestnetError) as exc:
        raise CommandError(str(exc)) from None

    def render(console: Console) -> None:
        _render(console, figures)

    out.emit(figures, render)
    if failed(figures):
        raise SystemExit(EXIT_ERROR)


def _render(console: Console, figures: dict[str, Any]) -> None:
    txs = figures["transactions"]
    table = Table("figure", "value", box=None, pad_edge=False)
    rows = [
        ("seed", figures["seed"]),
        ("duration", f"{figures['duration_s']} s"),
        ("runs", figures["runs"]),
        ("faults injected", figures["faults_total"]),
        ("inputs tried", figures["inputs_total"]),
        ("transactions submitted", txs["submitted"]),
        ("transactions committed", txs["committed"]),
        ("transactions checked", txs["checked"]),
        ("receipt lookups", txs["receipts_checked"]),
        ("blocks checked", figures["blocks_checked"]),
        ("lost", figures["lost"]),
        ("divergent", figures["divergent"]),
        ("max recovery", f"{figures['max_recovery_s']} s"),
        ("lowest flood throughput ratio", figures["min_flood_floor_ratio"]),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    faults = Table("fault", "count", box=None, pad_edge=False)
    for kind, count in figures["faults"].items():
        faults.add_row(kind, str(count))
    console.print(faults)
    inputs = Table("input", "count", box=None, pad_edge=False)
    for kind, count in figures["inputs"].items():
        inputs.add_row(kind, str(count))
    console.print(inputs)
    for problem in figures["problems"]:
        console.print(f"problem: {problem}")
    if figures["skipped_known_bugs"]:
        console.print("skipped (known bugs, --include-known-bugs runs them):")
        for name, reason in figures["skipped_known_bugs"].items():
            console.print(f"  {name}: {reason}")


@click.command("chaos-flood", hidden=True)
@click.option("--home", type=click.Path(path_type=Path), required=True)
@click.option("--duration", type=float, required=True)
@click.option("--stats", type=click.Path(path_type=Path), required=True)
@click.option("--seed", type=int, default=0)
@click.option("--rate", type=int, default=peer.DEFAULT_RATE_PER_S)
@click.option("--kinds", default=",".join(peer.FLOOD_KINDS))
@click.option("--big-junk-bytes", type=int, default=peer.BIG_JUNK_BYTES)
@click.option("--big-junk-per-s", type=float, default=peer.BIG_JUNK_PER_S)
@click.option("--blocks-wanted-per-s", type=float, default=peer.BLOCKS_WANTED_PER_S)
def chaos_flood(
    home: Path,
    duration: float,
    stats: Path,
    seed: int,
    rate: int,
    kinds: str,
    big_junk_bytes: int,
    big_junk_per_s: float,
    blocks_wanted_per_s: float,
) -> None:
    """Impersonate the validator of --home and flood junk (started by `quorum chaos`)."""
    chosen = tuple(k for k in kinds.split(",") if k)
    unknown = set(chosen) - set(peer.FLOOD_KINDS)
    if unknown:
        raise click.BadParameter(
            f"unknown kinds: {', '.join(sorted(unknown))}", param_hint="--kinds"
        )
    peer.run_flood(
        home,
        duration_s=duration,
        stats_file=stats,
        seed=seed,
        rate_per_s=rate,
        kinds=chosen,
        big_junk_bytes=big_junk_bytes,
        big_junk_per_s=big_junk_per_s,
        blocks_wanted_per_s=blocks_wanted_per_s,
    )
