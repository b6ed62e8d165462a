"""`quorum bench`: the command lines of the speed harnesses in ``ledger.bench``.

``quorum bench`` loads a running network (a testnet directory, or ``--node`` URLs with
``--key`` files), prints a table (or ``--json``), optionally a PNG plot, and exits 0 when
everything accepted was committed on every node, 1 when transactions were lost or failed
or the nodes disagree, 5 when a node cannot be reached. ``quorum bench burst`` runs
issue 12's overload scenario against such a network (capacity, a burst above it, an idle
watch, a probe) and exits 0 when every criterion held, 1 otherwise. ``quorum bench link``
and ``quorum bench vm`` time one peer link and the contract VM, in process.

Never: measure anything here; option parsing, the harness call and the printing only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from crypto.keyfile import load_key
from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger.bench import burst as burst_defaults
from ledger.bench import etcd as etcd_bench
from ledger.bench import plan
from ledger.cli.output import (
    EXIT_ERROR,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CommandError,
    Output,
    command_errors,
    json_option,
)
from ledger.testnet import DEFAULT_TESTNET_DIR, MANIFEST_FILE_NAME


def _testnet(directory: Path) -> tuple[list[str], list[PrivateKey]]:
    """The nodes' RPC URLs and the funded account keys of the testnet in ``directory``."""
    path = directory / MANIFEST_FILE_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        nodes = [str(n["rpc"]) for n in doc["nodes"]]
        files = [directory / str(a["file"]) for a in doc.get("accounts", [])]
    except FileNotFoundError:
        raise CommandError(
            f"no testnet in {directory} (run `quorum testnet init --dir {directory}`, "
            "or give --node URL and --key FILE)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"{path} is damaged: {exc}") from None
    return nodes, [load_key(f, None) for f in files]


def _targets(
    directory: Path | None, node_urls: tuple[str, ...], key_files: tuple[Path, ...]
) -> tuple[tuple[str, ...], tuple[PrivateKey, ...]]:
    """The nodes and funded keys from --dir / --node / --key (the testnet's by default)."""
    nodes: list[str] = []
    funded: list[PrivateKey] = []
    if directory is not None or not (node_urls and key_files):
        nodes, funded = _testnet(directory or Path(DEFAULT_TESTNET_DIR))
    if node_urls:
        nodes = list(node_urls)
    if key_files:
        funded = [load_key(f, None) for f in key_files]
    if not nodes:
        raise CommandError("no nodes to load (give --dir or --node)", EXIT_USAGE)
    if not funded:
        raise CommandError("no funded accounts (the testnet has none; give --key FILE)", EXIT_USAGE)
    return tuple(url.rstrip("/") for url in nodes), tuple(funded)


_F = TypeVar("_F", bound=Callable[..., Any])


def _target_options(command: _F) -> _F:
    """``--dir``, ``--node`` and ``--key``: the network a bench loads, and its accounts."""
    for option in reversed(
        (
            click.option(
                "--dir",
                "directory",
                type=click.Path(path_type=Path),
                help="Testnet directory: its nodes and funded accounts "
                f"(default ./{DEFAULT_TESTNET_DIR}).",
            ),
            click.option(
                "--node",
                "node_urls",
                multiple=True,
                metavar="URL",
                help="A node's RPC URL (repeat; replaces the testnet's nodes).",
            ),
            click.option(
                "--key",
                "key_files",
                multiple=True,
                type=click.Path(path_type=Path),
                help="A funded account's unencrypted key file "
                "(repeat; replaces the testnet's accounts).",
            ),
        )
    ):
        command = option(command)
    return command


def _bench_genesis(directory: Path | None, node_urls: tuple[str, ...]) -> Genesis | None:
    """The genesis blocks are verified against: the testnet's, unless only --node was given."""
    if directory is None and node_urls:
        return None
    return _testnet_genesis(directory or Path(DEFAULT_TESTNET_DIR))


def _testnet_genesis(directory: Path) -> Genesis | None:
    """The genesis of the testnet in ``directory`` (its first node's), to verify blocks."""
    from genesis.checks import GenesisError
    from genesis.document import load_genesis

    try:
        doc = json.loads((directory / MANIFEST_FILE_NAME).read_text(encoding="utf-8"))
        return load_genesis(directory / str(doc["nodes"][0]["name"]) / "genesis.json")
    except (OSError, ValueError, KeyError, IndexError, TypeError, GenesisError):
        return None


def _run_etcd(load: str, note: Callable[[str], None]) -> etcd_bench.EtcdResult | str:
    """etcd's figure, or why there is none (not installed: a note, not an error)."""
    if etcd_bench.binaries() is None:
        reason = f"etcd is not installed ({etcd_bench.INSTALL_HINT}): comparison skipped"
        note(reason)
        return reason
    try:
        return etcd_bench.run_check_perf(load=load, note=note)
    except etcd_bench.EtcdError as exc:
        raise CommandError(f"--compare-etcd: {exc}") from None


def _etcd_figures(etcd: etcd_bench.EtcdResult | str | None, tx_per_s: float) -> dict[str, Any]:
    if not isinstance(etcd, etcd_bench.EtcdResult):
        return {"skipped": etcd}
    return {**etcd.to_json(), "ratio": round(tx_per_s / max(etcd.writes_per_s, 1), 3)}


def render(d: dict[str, Any], console: Console) -> None:
    """The short table a person sees at the end."""
    table = Table(title=f"quorum bench: {d['kind']}, {d['mode']} loop", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("committed tx/s (all nodes)", f"{d['tx_per_s']:,.1f}"),
        (
            "latency p50 / p90 / p99 / max",
            f"{d['p50_ms']} / {d['p90_ms']} / {d['p99_ms']} / {d['max_ms']} ms",
        ),
        (
            "submitted / accepted / rejected",
            f"{d['submitted']:,} / {d['accepted']:,} / {d['rejected']:,}",
        ),
        ("committed / failed / lost", f"{d['committed']:,} / {d['failed']:,} / {d['lost']:,}"),
        ("nodes agree", "yes" if d["agree"] else "NO"),
        ("blocks (average txs)", f"{d['blocks']:,} ({d['avg_block_txs']})"),
        ("Ed25519 verify/s, one core", f"{d['verify_per_s']:,.0f}"),
        (
            "ceiling (verify/s x cores / n)",
            f"{d['ceiling_tx_per_s']:,.0f} tx/s ({d['cores']} cores, {d['validators']} validators)",
        ),
        ("fraction of the ceiling", f"{d['ceiling_fraction'] * 100:.1f} %"),
        (
            "load",
            f"{d['load_s']} s + {d['drain_s']} s drain, {d['clients']} clients, "
            f"batch {d['batch']} ({d['api']})" + (f", rate {d['rate']:g}/s" if d["rate"] else ""),
        ),
        ("accounts", f"{d['accounts']} ({d['accounts_created']} created)"),
    ]
    etcd = d.get("etcd")
    if etcd is not None and "writes_per_s" in etcd:
        rows.append(
            (
                f"etcd {etcd['version']} check perf --load={etcd['load']}",
                f"{etcd['writes_per_s']:,} writes/s ({etcd['members']} members)",
            )
        )
        rows.append(("committed tx/s / etcd writes/s", f"{etcd['ratio']:.2f}"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if etcd is not None and "skipped" in etcd:
        console.print(f"note: {etcd['skipped']}")
    if d["refused"]:
        console.print(
            f"refused (node busy, sent again): {json.dumps(d['refused'])}; "
            f"{d['refused_txs']:,} transactions, {d['retries']:,} retries, "
            f"{d['held_back']:,} held back behind them"
        )
    if d["rejected_codes"]:
        console.print(f"rejected: {d['rejected_codes']}")
    if d["dropped"]:
        console.print(f"dropped by the node after acceptance: {d['dropped']}")
    for lost in d.get("lost_detail", []):
        console.print(
            f"lost: sender {lost['sender']}: {lost['lost']:,} from nonce "
            f"{lost['first_lost_nonce']}"
            + (
                f", behind nonce {lost['hole_nonce']} ({lost['hole']})"
                if lost["hole_nonce"] is not None
                else ", nothing missing below it"
            )
        )
    if d["unreachable"]:
        console.print(f"unreachable at the end: {', '.join(d['unreachable'])}")
    if d["exhausted"]:
        console.print(
            f"note: all {d['presigned']:,} pre-signed transactions were used before the time "
            "was up (raise --max-txs)"
        )


@click.group(
    "bench", invoke_without_command=True, subcommand_metavar="[burst | reads | link | vm] [ARGS]..."
)
@_target_options
@click.option(
    "--duration",
    type=click.FloatRange(0.1, 3600),
    default=plan.DEFAULT_DURATION_S,
    show_default=True,
    help="Seconds of measured load.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(0, 600),
    default=0.0,
    show_default=True,
    help="Seconds of load before the measurement starts.",
)
@click.option("--kind", type=click.Choice(plan.KINDS), default="transfer", show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(1, 1_000_000),
    help="Open loop at this many tx/s (default: closed loop).",
)
@click.option(
    "--clients",
    type=click.IntRange(1, 256),
    default=plan.DEFAULT_CLIENTS,
    show_default=True,
    help="Concurrent client tasks.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 5000),
    help="Transactions per request (default 250 closed loop; rate/50 open loop).",
)
@click.option(
    "--accounts",
    type=click.IntRange(2, plan.MAX_ACCOUNTS),
    help="Sender accounts; more than the funded ones are created and funded "
    "(default: the funded ones, more if clients x batch needs them).",
)
@click.option(
    "--max-txs",
    type=click.IntRange(1, plan.MAX_PRESIGNED),
    help="Transactions to pre-sign (default: rate x time open loop; 0.6 x the "
    "verification ceiling x time closed loop). About 250 bytes each in memory.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(1, 3600),
    default=plan.DEFAULT_DRAIN_TIMEOUT_S,
    show_default=True,
    help="Seconds after the load for accepted transactions to commit on every node.",
)
@click.option(
    "--verify-samples",
    type=click.IntRange(100, 10_000_000),
    default=plan.DEFAULT_VERIFY_SAMPLES,
    show_default=True,
    help="Ed25519 verifications timed to measure verify_per_s.",
)
@click.option(
    "--plot",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a PNG of throughput and latency over time (needs matplotlib).",
)
@click.option(
    "--api",
    "api",
    type=click.Choice(["msgpack", "json"]),
    default="msgpack",
    show_default=True,
    help="How transactions are posted: MessagePack with their raw bytes, or JSON with hex.",
)
@click.option(
    "--compare-etcd",
    is_flag=True,
    help="First run `etcdctl check perf` on a local 3-member etcd cluster (Debian's "
    "etcd-server and etcd-client) and print the ratio of the two figures.",
)
@click.option(
    "--etcd-load",
    type=click.Choice(etcd_bench.LOADS),
    default="xl",
    show_default=True,
    help="The `check perf` load for --compare-etcd.",
)
@json_option
@click.pass_context
@command_errors
def bench(
    ctx: click.Context,
    directory: Path | None,
    node_urls: tuple[str, ...],
    key_files: tuple[Path, ...],
    duration: float,
    warmup: float,
    kind: str,
    rate: float | None,
    clients: int,
    batch: int | None,
    accounts: int | None,
    max_txs: int | None,
    drain_timeout: float,
    verify_samples: int,
    plot: Path | None,
    api: str,
    compare_etcd: bool,
    etcd_load: str,
    as_json: bool,
) -> None:
    """Load a running network through its HTTP API and measure committed tx/s and latency.

    Pre-signs transfers (or token contract calls with --kind contract) from many accounts,
    submits them in batches from concurrent clients to all nodes (closed loop, or open
    loop at --rate), and checks every accepted transaction committed on every node.

    `quorum bench burst` runs the overload scenario of issue 12 (capacity, a burst at 3x
    it, an idle watch, a probe); `quorum bench reads` what verifiable reads cost.
    `quorum bench link` and `quorum bench vm` time one
    encrypted peer link and the contract VM in this process instead. The options above
    do not apply to these subcommands (burst has its own --dir, --node and --key).
    """
    if ctx.invoked_subcommand is not None:
        return
    from ledger.bench.plot import plot_support, write_plot
    from ledger.bench.run import run_bench

    out = Output(as_json)
    if plot is not None and not plot_support():
        raise CommandError(
            "--plot needs matplotlib, which is not installed (pip install matplotlib)"
        )
    nodes, funded = _targets(directory, node_urls, key_files)
    options = plan.BenchOptions(
        nodes=nodes,
        funded=funded,
        duration_s=duration,
        warmup_s=warmup,
        kind=kind,
        rate=rate,
        clients=clients,
        batch=batch,
        accounts=accounts,
        max_txs=max_txs,
        drain_timeout_s=drain_timeout,
        verify_samples=verify_samples,
        binary=api == "msgpack",
        genesis=_bench_genesis(directory, node_urls),
    )
    console = None if as_json else out.err_console
    etcd = _run_etcd(etcd_load, out.note) if compare_etcd else None
    try:
        document = run_bench(options, console, out.note)
    except plan.BenchError as exc:
        raise CommandError(str(exc), EXIT_UNREACHABLE if exc.unreachable else EXIT_ERROR) from None
    if compare_etcd:
        document["etcd"] = _etcd_figures(etcd, document["tx_per_s"])
    if plot is not None:
        write_plot(document, plot)
        document["plot"] = str(plot)
    out.emit(document, lambda c: render(document, c))
    if document["unreachable"]:
        raise SystemExit(EXIT_UNREACHABLE)
    if document["lost"] or document["failed"] or not document["agree"]:
        if not as_json:
            click.echo(
                f"error: {document['lost']} transactions lost, {document['failed']} failed"
                + ("" if document["agree"] else ", the nodes disagree"),
                err=True,
            )
        raise SystemExit(EXIT_ERROR)


@bench.command("burst")
@_target_options
@click.option(
    "--capacity-duration",
    type=click.FloatRange(0.1, 3600),
    default=burst_defaults.DEFAULT_CAPACITY_S,
    show_default=True,
    help="Seconds of the closed-loop run that measures the capacity C.",
)
@click.option(
    "--factor",
    type=click.FloatRange(0.01, 100),
    default=burst_defaults.DEFAULT_FACTOR,
    show_default=True,
    help="The burst's open-loop rate, in multiples of C.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0.1, 3600),
    default=burst_defaults.DEFAULT_BURST_S,
    show_default=True,
    help="Seconds of the burst.",
)
@click.option(
    "--idle",
    type=click.FloatRange(0, 3600),
    default=burst_defaults.DEFAULT_IDLE_S,
    show_default=True,
    help="Seconds of idle watch after the burst (nothing submitted).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(1, 3600),
    default=burst_defaults.DEFAULT_BURST_DRAIN_S,
    show_default=True,
    help="Seconds after the burst for accepted transactions to commit on every node.",
)
@click.option(
    "--verify-samples",
    type=click.IntRange(100, 10_000_000),
    default=plan.DEFAULT_VERIFY_SAMPLES,
    show_default=True,
    help="Ed25519 verifications timed in each run's setup.",
)
@json_option
@command_errors
def burst(
    directory: Path | None,
    node_urls: tuple[str, ...],
    key_files: tuple[Path, ...],
    capacity_duration: float,
    factor: float,
    duration: float,
    idle: float,
    drain_timeout: float,
    verify_samples: int,
    as_json: bool,
) -> None:
    """Issue 12's overload scenario: does a burst above capacity leave the network well?

    Measures the capacity C (closed loop), bursts at --factor x C (open loop) while
    honouring the nodes' backpressure, watches the idle network, and times one probe
    transfer; prints the figures and whether each criterion held (goodput >= 0.8 C, p99
    <= 10 s, nothing accepted lost, <= 1 view change in the burst and none at idle,
    mempools empty, the probe committed within 2 s). Exit 0 when all held, 1 otherwise.
    """
    from ledger.bench.burst import BurstOptions, run_burst

    out = Output(as_json)
    nodes, funded = _targets(directory, node_urls, key_files)
    options = BurstOptions(
        nodes=nodes,
        funded=funded,
        capacity_s=capacity_duration,
        factor=factor,
        duration_s=duration,
        idle_s=idle,
        drain_timeout_s=drain_timeout,
        verify_samples=verify_samples,
        genesis=_bench_genesis(directory, node_urls),
    )
    console = None if as_json else out.err_console
    try:
        document = run_burst(options, console, out.note)
    except plan.BenchError as exc:
        raise CommandError(str(exc), EXIT_UNREACHABLE if exc.unreachable else EXIT_ERROR) from None
    out.emit(document, lambda c: render_burst(document, c))
    if not document["passed"]:
        raise SystemExit(EXIT_ERROR)


def render_burst(d: dict[str, Any], console: Console) -> None:
    """The burst scenario's figures and criteria, for a person."""
    table = Table(title="quorum bench burst", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    burst_s = d["durations_s"]["burst"]
    rows = [
        ("capacity C (closed loop)", f"{d['capacity_tx_per_s']:,.1f} tx/s"),
        (
            "offered (open loop)",
            f"{d['offered_rate']:,.1f} tx/s ({d['factor']:g} x C, {burst_s:g} s)",
        ),
        ("goodput", f"{d['goodput_tx_per_s']:,.1f} tx/s ({d['goodput_ratio']:.2f} x C)"),
        ("latency p50 / p99 (from acceptance)", f"{d['p50_ms']} / {d['p99_ms']} ms"),
        (
            "latency p50 / p99 (from first post)",
            f"{d['p50_from_first_post_ms']} / {d['p99_from_first_post_ms']} ms",
        ),
        (
            "submitted / accepted / committed / lost",
            f"{d['submitted']:,} / {d['accepted']:,} / {d['committed']:,} / {d['lost']:,}",
        ),
        ("refused (by code)", json.dumps(d["refused"]) if d["refused"] else "none"),
        ("retries / held back", f"{d['retries']:,} / {d['held_back']:,}"),
        ("rejected / dropped", f"{json.dumps(d['rejected'])} / {json.dumps(d['dropped'])}"),
        ("views before / after burst", f"{d['views_before_burst']} / {d['views_after_burst']}"),
        ("view changes: burst / idle", f"{d['view_changes_burst']} / {d['view_changes_idle']}"),
        ("mempools after idle", str(d["mempools_after_idle"])),
        ("probe transfer", f"{d['probe']['status']} in {d['probe_ms']} ms"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    checks = Table(title="issue 12: done when", show_header=True)
    checks.add_column("criterion", style="bold")
    checks.add_column("value", justify="right")
    checks.add_column("wanted")
    checks.add_column("held")
    for name, check in d["checks"].items():
        checks.add_row(name, str(check["value"]), check["want"], "yes" if check["held"] else "NO")
    console.print(checks)
    console.print("all criteria held" if d["passed"] else "some criteria did not hold")


@bench.command("link")
@click.option(
    "--messages",
    type=click.IntRange(1, 100_000_000),
    default=1_000_000,
    show_default=True,
    help="Messages sent over the link (and through the cipher alone).",
)
@click.option(
    "--size",
    type=click.IntRange(1, 1_000_000),
    default=150,
    show_default=True,
    help="Bytes per message.",
)
@json_option
@command_errors
def link(messages: int, size: int, as_json: bool) -> None:
    """Time one encrypted peer link between two validators in this process.

    Prints messages/s and MB/s of the cipher alone (seal, open, split) and of a real TCP
    link on loopback (queued as fast as the link drains), and the ping-pong round trip.
    """
    from ledger.bench.link import measure_link

    out = Output(as_json)
    out.note(f"bench link: {messages:,} messages of {size} bytes...")
    figures = measure_link(messages, size)
    out.emit(figures, lambda c: _render_figures("quorum bench link", figures, c))


@bench.command("vm")
@click.option(
    "--iterations",
    type=click.IntRange(1, 1_000_000_000),
    default=1_000_000,
    show_default=True,
    help="Iterations of the counting loop (10 instructions each).",
)
@click.option(
    "--transfers",
    type=click.IntRange(1, 10_000_000),
    default=20_000,
    show_default=True,
    help="Token contract transfers.",
)
@json_option
@command_errors
def vm(iterations: int, transfers: int, as_json: bool) -> None:
    """Time the contract VM in this process: instructions/s and token transfers/s."""
    from ledger.bench.vm import measure_vm

    out = Output(as_json)
    figures = measure_vm(iterations, transfers)
    out.emit(figures, lambda c: _render_figures("quorum bench vm", figures, c))


def _render_figures(title: str, figures: dict[str, Any], console: Console) -> None:
    """A flat table of nested figures: one row per number."""
    table = Table(title=title, show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        for key, number in value.items() if isinstance(value, dict) else [("", value)]:
            shown = f"{number:,.1f}" if isinstance(number, float) else f"{number:,}"
            table.add_row(f"{name} {key}".strip(), shown)
    console.print(table)


@bench.command("reads")
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Testnet directory.")
@click.option("--node", "node_url", help="Node RPC URL (default: the testnet's first node).")
@click.option(
    "--genesis",
    "genesis_file",
    type=click.Path(path_type=Path),
    help="Genesis to verify against (default: the testnet's).",
)
@click.option(
    "--count", type=click.IntRange(1, 1_000_000), default=500, show_default=True,
    help="Reads of each kind.",
)  # fmt: skip
@json_option
@command_errors
def reads(
    directory: Path | None,
    node_url: str | None,
    genesis_file: Path | None,
    count: int,
    as_json: bool,
) -> None:
    """What verifiable reads cost: round trips with and without proofs, proof sizes, and
    the light client's verifications per second."""
    from genesis.checks import GenesisError
    from genesis.document import load_genesis
    from ledger.bench.reads import measure_reads
    from ledger.light import VerificationError

    where = directory or Path(DEFAULT_TESTNET_DIR)
    nodes, _ = _testnet(where) if node_url is None else ([node_url], [])
    try:
        genesis = (
            load_genesis(genesis_file) if genesis_file is not None else _testnet_genesis(where)
        )
    except GenesisError as exc:
        raise CommandError(str(exc)) from None
    if genesis is None:
        raise CommandError("no genesis to verify against: give --dir or --genesis")
    out = Output(as_json)
    try:
        figures = measure_reads(nodes[0], genesis, count)
    except VerificationError as exc:
        raise CommandError(f"a read did not verify: {exc}") from None
    out.emit(figures, lambda c: _render_figures("quorum bench reads", figures, c))
