"""`quorum node`: make one validator's home, and run it in the foreground."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import trio
from rich.console import Console

from crypto.keyfile import save_key
from crypto.keys import PrivateKey
from genesis.document import load_genesis
from ledger.cli.output import CommandError, Output, command_errors, json_option
from ledger.cli.passwords import new_password, read_password_file
from ledger.config import (
    CONFIG_FILE_NAME,
    GENESIS_FILE_NAME,
    VALIDATOR_KEY_FILE_NAME,
    ConfigError,
    HostPort,
    NodeConfig,
)
from ledger.node.run import StartupError, run_node


@click.group()
def node() -> None:
    """Create a validator home and run a validator."""


@node.command("init")
@click.option(
    "--home", type=click.Path(path_type=Path), required=True, help="Directory for the node."
)
@click.option("--name", required=True, help="This validator's name (as it will appear in genesis).")
@click.option(
    "--p2p", "p2p", default="0.0.0.0:26656", show_default=True, help="Peer listen address."
)
@click.option(
    "--rpc", "rpc", default="127.0.0.1:26657", show_default=True, help="HTTP API listen address."
)
@click.option(
    "--genesis",
    "genesis_file",
    type=click.Path(path_type=Path),
    help="Copy this genesis into the home.",
)
@click.option(
    "--password-file",
    type=click.Path(path_type=Path),
    help="Encrypt the validator key with this password.",
)
@click.option("--no-password", is_flag=True, help="Store the validator key unencrypted.")
@json_option
@command_errors
def node_init(
    home: Path,
    name: str,
    p2p: str,
    rpc: str,
    genesis_file: Path | None,
    password_file: Path | None,
    no_password: bool,
    as_json: bool,
) -> None:
    """Create a home with a new validator key and a config; prints the public key for genesis."""
    if (home / CONFIG_FILE_NAME).exists():
        raise CommandError(f"{home} already holds a node ({CONFIG_FILE_NAME} exists)")
    try:
        p2p_listen = HostPort.parse(p2p, "--p2p")
        rpc_listen = HostPort.parse(rpc, "--rpc")
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None
    password = new_password(password_file, no_password)
    if genesis_file is not None:
        load_genesis(genesis_file)  # refuse a broken genesis before writing anything
    home.mkdir(parents=True, exist_ok=True)
    key = PrivateKey.generate()
    save_key(home / VALIDATOR_KEY_FILE_NAME, key, password)
    config = NodeConfig(
        home=home.resolve(), name=name, rpc_listen=rpc_listen, p2p_listen=p2p_listen
    )
    (home / CONFIG_FILE_NAME).write_text(config.to_toml(), encoding="utf-8")
    if genesis_file is not None:
        shutil.copyfile(genesis_file, home / GENESIS_FILE_NAME)
    doc = {
        "home": str(home),
        "name": name,
        "public_key": key.public_key.hex(),
        "address": key.address.hex(),
        "p2p": str(p2p_listen),
        "rpc": f"http://{rpc_listen}",
    }

    def render(console: Console) -> None:
        console.print(f"created validator home {home}")
        console.print(f"public key {doc['public_key']}  (send this to whoever writes the genesis)")
        console.print(
            "next: put genesis.json in the home, list the other validators under [p2p] peers in config.toml,"
        )
        console.print(f"then run: quorum node start --home {home}")

    Output(as_json).emit(doc, render)


@node.command("start")
@click.option(
    "--home", type=click.Path(path_type=Path), required=True, help="The node's home directory."
)
@click.option(
    "--password-file",
    type=click.Path(path_type=Path),
    help="Password of an encrypted validator key.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines for people (text) or one JSON object per line (json); default: the "
    "config's node.log_format, else text.",
)
@command_errors
def node_start(home: Path, password_file: Path | None, log_format: str | None) -> None:
    """Run the validator in the foreground until SIGTERM or Ctrl-C, or until, voted out of
    the validator set, it has retired (exit status 0, the message on stderr)."""
    password = read_password_file(password_file) if password_file else None
    try:
        retired = trio.run(lambda: run_node(home, password=password, log_format=log_format))
    except StartupError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        return
    if retired is not None:
        click.echo(f"{home}: {retired}", err=True)
