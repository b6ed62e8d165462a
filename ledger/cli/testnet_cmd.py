"""`quorum testnet`: a multi-validator network on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ledger.cli.genesis_cmd import genesis_summary, render_genesis_summary
from ledger.cli.output import CommandError, Output, command_errors, json_option
from ledger.cli.testnet import (
    DEFAULT_ACCOUNT_BALANCE,
    DEFAULT_BASE_PORT,
    DEFAULT_CHAIN_ID,
    DEFAULT_TESTNET_DIR,
    TestnetError,
    init_testnet,
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
    as_json: bool,
) -> None:
    """Lay out validator homes, genesis and funded accounts in --dir."""
    try:
        layout = init_testnet(
            directory,
            validators=validators,
            base_port=base_port,
            accounts=accounts,
            balance=balance,
            chain_id=chain_id,
            force=force,
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
