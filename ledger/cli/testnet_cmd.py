"""`quorum testnet`: a multi-validator network on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ledger.cli.genesis_cmd import genesis_summary, render_genesis_summary
from ledger.cli.output import EXIT_USAGE, CommandError, Output, command_errors, json_option
from ledger.testnet import (
    DEFAULT_ACCOUNT_BALANCE,
    DEFAULT_BASE_PORT,
    DEFAULT_CHAIN_ID,
    DEFAULT_TESTNET_DIR,
    LOG_FILE_NAME,
    TestnetError,
    init_testnet,
    load_manifest,
    pid_running,
    read_pid,
    select_nodes,
    start_nodes,
    stop_nodes,
)

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=DEFAULT_TESTNET_DIR,
    show_default=True,
    help="Testnet directory.",
)


@click.group()
def testnet() -> None:
    """Run a multi-validator network on this machine."""


@testnet.command("init")
@click.option(
    "--validators",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Number of validators.",
)
@dir_option
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65535),
    default=DEFAULT_BASE_PORT,
    show_default=True,
    help="First port; node i uses base+2i (p2p) and base+2i+1 (rpc).",
)
@click.option(
    "--accounts",
    type=click.IntRange(0, 10_000),
    default=4,
    show_default=True,
    help="Funded accounts to create.",
)
@click.option(
    "--balance",
    type=click.IntRange(0, 2**64 - 1),
    default=DEFAULT_ACCOUNT_BALANCE,
    show_default=True,
    help="Initial balance of each account.",
)
@click.option("--chain-id", default=DEFAULT_CHAIN_ID, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing testnet in --dir.")
@click.option(
    "--permissioned",
    is_flag=True,
    help="Only the testnet accounts may submit transactions and deploy contracts; acct0 is "
    "the admin who grants and revokes roles (`quorum permissions`).",
)
@click.option(
    "--admins",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="With --permissioned: acct0 .. acct{N-1} are admins.",
)
@click.option(
    "--admin-threshold",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="With --permissioned: how many admins must vote for a role change.",
)
@click.option(
    "--checkpoint-interval",
    type=click.IntRange(1, 10_000),
    default=64,
    show_default=True,
    help="Blocks between checkpoints (validator-set changes take effect at one).",
)
@json_option
@command_errors
def testnet_init(
    validators: int,
    directory: Path,
    base_port: int,
    accounts: int,
    balance: int,
    chain_id: str,
    force: bool,
    permissioned: bool,
    admins: int,
    admin_threshold: int,
    checkpoint_interval: int,
    as_json: bool,
) -> None:
    """Lay out validator homes, genesis and funded accounts in --dir."""
    if not permissioned and (admins != 1 or admin_threshold != 1):
        raise CommandError("--admins and --admin-threshold need --permissioned", EXIT_USAGE)
    try:
        layout = init_testnet(
            directory,
            validators=validators,
            base_port=base_port,
            accounts=accounts,
            balance=balance,
            chain_id=chain_id,
            force=force,
            permissioned=permissioned,
            admins=admins,
            admin_threshold=admin_threshold,
            checkpoint_interval=checkpoint_interval,
        )
    except TestnetError as exc:
        raise CommandError(str(exc)) from None
    manifest = layout.manifest()
    doc: dict[str, Any] = {
        "dir": str(directory),
        "nodes": manifest["nodes"],
        "accounts": manifest["accounts"],
        "genesis": genesis_summary(layout.genesis),
    }

    def render(console: Console) -> None:
        console.print(f"testnet of {validators} validators in {directory}")
        table = Table("name", "home", "rpc", "p2p", box=None, pad_edge=False)
        for node in manifest["nodes"]:
            table.add_row(node["name"], str(directory / node["home"]), node["rpc"], node["p2p"])
        console.print(table)
        console.print(f"{len(manifest['accounts'])} funded accounts in {directory / 'accounts'}")
        render_genesis_summary(doc["genesis"], console)

    Output(as_json).emit(doc, render)


only_option = click.option("--only", metavar="NAME", help="Act on this node only (e.g. node2).")


@testnet.command("start")
@dir_option
@only_option
@click.option(
    "--with-monitoring",
    is_flag=True,
    help="Also start Prometheus and Grafana where installed (configured for this testnet, "
    "with the Quorum dashboard); what is not installed is skipped with a note.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="The nodes' log lines: text, or one JSON object per line (default: their configs').",
)
@json_option
@command_errors
def testnet_start(
    directory: Path, only: str | None, with_monitoring: bool, log_format: str | None, as_json: bool
) -> None:
    """Start the testnet's nodes in the background; returns when every one serves its API
    and, when the whole testnet starts, is linked to a quorum of validators."""
    out = Output(as_json)
    try:
        every = load_manifest(directory)
        nodes = select_nodes(every, only)
        out.note(f"starting {', '.join(n.name for n in nodes)} ...")
        started = start_nodes(nodes, linked=only is None, log_format=log_format)
    except TestnetError as exc:
        raise CommandError(str(exc)) from None
    monitoring = []
    if with_monitoring:
        from ledger.monitoring import start_monitoring

        monitoring = [c.to_json() for c in start_monitoring(directory, every)]
    doc: dict[str, Any] = {
        "nodes": [
            {
                "name": n.name,
                "pid": pid,
                "rpc": n.rpc,
                "p2p": n.p2p,
                "log": str(n.home / LOG_FILE_NAME),
            }
            for n, pid in started
        ]
    }
    if with_monitoring:
        doc["monitoring"] = monitoring

    def render(console: Console) -> None:
        for entry in doc["nodes"]:
            console.print(
                f"{entry['name']} running (pid {entry['pid']}) rpc {entry['rpc']} log {entry['log']}"
            )
            console.print(f"  explorer {entry['rpc']}/explorer")
        for component in monitoring:
            where = f" {component['url']}" if component["state"] in ("started", "running") else ""
            console.print(f"{component['name']} {component['state']}{where}. {component['note']}")

    out.emit(doc, render)


@testnet.command("stop")
@dir_option
@only_option
@json_option
@command_errors
def testnet_stop(directory: Path, only: str | None, as_json: bool) -> None:
    """Stop the testnet's nodes (SIGTERM, then SIGKILL after a grace period)."""
    try:
        report = stop_nodes(select_nodes(load_manifest(directory), only))
    except TestnetError as exc:
        raise CommandError(str(exc)) from None
    monitoring = []
    if only is None:
        from ledger.monitoring import stop_monitoring

        monitoring = [c.to_json() for c in stop_monitoring(directory)]
    doc = {
        "nodes": [
            {"name": n.name, "pid": pid, "was_running": running} for n, pid, running in report
        ],
        "monitoring": monitoring,
    }

    def render(console: Console) -> None:
        for entry in doc["nodes"]:
            console.print(
                f"{entry['name']} {'stopped' if entry['was_running'] else 'was not running'}"
            )
        for component in monitoring:
            console.print(f"{component['name']} stopped")

    Output(as_json).emit(doc, render)


@testnet.command("add-node")
@dir_option
@json_option
@command_errors
def testnet_add_node(directory: Path, as_json: bool) -> None:
    """Add a validator home (next name and free ports) and start it as a follower: it
    replays the chain and joins once the validators vote it in (the printed command)."""
    from ledger.testnet_add import add_node, propose_command

    try:
        nodes = load_manifest(directory)
        added = add_node(directory)
        Output(as_json).note(f"starting {added.entry.name} as a follower ...")
        ((_, pid),) = start_nodes([added.entry])
    except TestnetError as exc:
        raise CommandError(str(exc)) from None
    votes = [propose_command(added, voter) for voter in nodes]
    doc = {
        **added.to_json(),
        "pid": pid,
        "log": str(added.entry.home / LOG_FILE_NAME),
        "propose": votes[0],
        "propose_commands": votes,
    }

    def render(console: Console) -> None:
        console.print(
            f"{doc['name']} following (pid {pid}) pubkey {doc['public_key']}\n"
            f"  p2p {doc['p2p']} rpc {doc['rpc']} log {doc['log']}\n"
            "To add it, q of the current validators (3 of 4) vote, e.g.:"
        )
        for vote in votes:
            console.print(f"  {vote}", soft_wrap=True)

    Output(as_json).emit(doc, render)


@testnet.command("status")
@dir_option
@json_option
@command_errors
def testnet_status(directory: Path, as_json: bool) -> None:
    """A table of the testnet's nodes: process, height, head, view, primary, peers."""
    from ledger.client import ClientError, QuorumClient

    try:
        nodes = load_manifest(directory)
    except TestnetError as exc:
        raise CommandError(str(exc)) from None
    rows: list[dict[str, Any]] = []
    for node in nodes:
        pid = read_pid(node)
        entry: dict[str, Any] = {
            "name": node.name,
            "pid": pid,
            "running": pid_running(pid),
            "rpc": node.rpc,
            "p2p": node.p2p,
        }
        if entry["running"]:
            try:
                with QuorumClient(node.rpc, timeout_s=3.0) as client:
                    status = client.status()
                entry.update(
                    {
                        "height": status["height"],
                        "head_hash": status["head_hash"],
                        "view": status["view"],
                        "primary": status["primary"],
                        "peers": status["peers"],
                        "syncing": status["syncing"],
                        "mempool": status["mempool"]["transactions"],
                        "waiting_for": status["waiting_for"],
                    }
                )
            except ClientError as exc:
                entry["error"] = str(exc)
        rows.append(entry)
    doc = {"dir": str(directory), "nodes": rows}

    def render(console: Console) -> None:
        table = Table(
            "name",
            "pid",
            "state",
            "height",
            "head",
            "view",
            "primary",
            "peers",
            "mempool",
            box=None,
            pad_edge=False,
        )
        for r in rows:
            state = "running" if r["running"] else "stopped"
            if r.get("error"):
                state = "unreachable"
            elif r.get("syncing"):
                state = _syncing_text(r["syncing"])
            table.add_row(
                r["name"], str(r["pid"] or "-"), state, str(r.get("height", "-")), (r.get("head_hash") or "-")[:16],
                str(r.get("view", "-")), str(r.get("primary", "-")), str(len(r.get("peers", []))) if "peers" in r else "-",
                str(r.get("mempool", "-")),
            )  # fmt: skip
        console.print(table)

    Output(as_json).emit(doc, render)


def _syncing_text(syncing: Any) -> str:
    """``syncing`` of /v1/status for a person: the phase and how far it got."""
    if not isinstance(syncing, dict):
        return "syncing"
    progress = syncing.get("progress") or {}
    if syncing.get("mode") == "state_sync":
        done, total = progress.get("chunks_done", 0), progress.get("chunks_total", 0)
        return f"state sync: {syncing.get('phase')} {done}/{total} chunks"
    return f"replaying to {progress.get('target', '?')}"
