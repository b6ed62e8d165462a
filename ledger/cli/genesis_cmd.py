"""`quorum genesis`: write and check genesis documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from crypto.hashing import from_hex
from crypto.keyfile import read_public_info
from crypto.keys import ADDRESS_SIZE, PUBLIC_KEY_SIZE
from genesis.builder import build_genesis
from genesis.document import Genesis, dump_genesis, load_genesis
from ledger.cli.output import EXIT_USAGE, CommandError, Output, command_errors, json_option


@click.group()
def genesis() -> None:
    """Write and check genesis documents."""


def genesis_summary(g: Genesis) -> dict[str, Any]:
    """The facts an operator checks before starting a network, as JSON."""
    return {
        "chain_id": g.chain_id,
        "genesis_hash": g.hash().hex(),
        "genesis_time": g.genesis_time,
        "initial_height": g.initial_height,
        "validators": [{"name": v.name, "public_key": v.public_key.hex()} for v in g.validators],
        "validator_count": g.n,
        "max_faulty": g.f,
        "quorum": g.quorum,
        "validators_hash": g.validators_hash().hex(),
        "accounts": len(g.accounts),
        "total_supply": sum(a.balance for a in g.accounts) + sum(c.balance for c in g.contracts),
        "contracts": len(g.contracts),
        "consensus": g.to_json()["consensus"],
        "permissions": g.permissions.to_json(),
    }


def render_genesis_summary(doc: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]chain[/bold]           {doc['chain_id']}")
    console.print(f"genesis hash    {doc['genesis_hash']}")
    console.print(f"genesis time    {doc['genesis_time']}   initial height {doc['initial_height']}")
    console.print(
        f"validators      {doc['validator_count']}  (tolerates f = {doc['max_faulty']} Byzantine, "
        f"quorum q = {doc['quorum']})"
    )
    table = Table("#", "name", "public key", box=None, pad_edge=False)
    for i, v in enumerate(doc["validators"]):
        table.add_row(str(i), v["name"], v["public_key"])
    console.print(table)
    console.print(
        f"accounts        {doc['accounts']}   total supply {doc['total_supply']:,}   "
        f"contracts {doc['contracts']}"
    )
    params = ", ".join(f"{k}={v}" for k, v in doc["consensus"].items())
    console.print(f"consensus       {params}")
    perms = doc["permissions"]
    if perms != {"submit": "any", "deploy": "any", "admin": []}:

        def who(v: object) -> str:
            return "any account" if v == "any" else f"{len(v)} account(s)"  # type: ignore[arg-type]

        console.print(
            f"permissions     submit: {who(perms['submit'])}, deploy: {who(perms['deploy'])}, "
            f"admin: {who(perms['admin'])} (threshold {perms.get('admin_threshold', 1)})"
        )


def _parse_validator(spec: str) -> tuple[str, bytes]:
    name, sep, value = spec.partition("=")
    if not sep or not name or not value:
        raise CommandError(
            f"--validator {spec!r}: expected NAME=PUBLIC_KEY_HEX or NAME=KEY_FILE", EXIT_USAGE
        )
    path = Path(value)
    if path.exists():
        return name, read_public_info(path).public_key
    try:
        return name, from_hex(value, size=PUBLIC_KEY_SIZE, name=f"--validator {name}")
    except ValueError as exc:
        raise CommandError(f"{exc} (or name an existing key file)", EXIT_USAGE) from None


def _parse_account(spec: str) -> tuple[bytes, int]:
    addr, sep, amount = spec.partition("=")
    if not sep or not amount.isdigit():
        raise CommandError(f"--account {spec!r}: expected ADDRESS=BALANCE", EXIT_USAGE)
    try:
        return from_hex(addr, size=ADDRESS_SIZE, name="--account address"), int(amount)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


@genesis.command("new")
@click.option("--chain-id", required=True, help="Chain identifier, e.g. payments-prod.")
@click.option(
    "--validator",
    "validators",
    multiple=True,
    required=True,
    metavar="NAME=KEY",
    help="A validator: NAME=PUBLIC_KEY_HEX or NAME=KEY_FILE. Repeat; order sets the primary rotation.",
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="ADDRESS=BALANCE",
    help="A funded account. Repeat.",
)
@click.option("--genesis-time", help="RFC 3339 UTC time, e.g. 2026-11-26T07:00:00Z (default: now).")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Genesis file to write.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@json_option
@command_errors
def genesis_new(
    chain_id: str,
    validators: tuple[str, ...],
    accounts: tuple[str, ...],
    genesis_time: str | None,
    out_path: Path,
    force: bool,
    as_json: bool,
) -> None:
    """Write a new genesis document."""
    if out_path.exists() and not force:
        raise CommandError(f"{out_path} already exists (use --force to overwrite)")
    g = build_genesis(
        chain_id,
        [_parse_validator(v) for v in validators],
        [_parse_account(a) for a in accounts],
        genesis_time=genesis_time,
    )
    dump_genesis(g, out_path)
    doc = {"file": str(out_path), **genesis_summary(g)}

    def render(console: Console) -> None:
        console.print(f"wrote {out_path}")
        render_genesis_summary(doc, console)

    Output(as_json).emit(doc, render)


@genesis.command("validate")
@click.argument("genesis_file", type=click.Path(path_type=Path))
@json_option
@command_errors
def genesis_validate(genesis_file: Path, as_json: bool) -> None:
    """Check a genesis document and print its summary and hash."""
    g = load_genesis(genesis_file)
    doc = {"file": str(genesis_file), "valid": True, **genesis_summary(g)}

    def render(console: Console) -> None:
        console.print(f"{genesis_file}: valid")
        render_genesis_summary(doc, console)

    Output(as_json).emit(doc, render)
