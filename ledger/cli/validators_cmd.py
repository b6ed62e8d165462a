"""`quorum validators`: vote to add or remove a validator, and list the set in state.

A proposal is a ``validator`` transaction signed by a CURRENT validator's key
(ledger/chain/validators.py): it is a vote, and the change takes effect at the first
checkpoint after q = ceil((n+f+1)/2) current validators voted for the same change.
Exit codes are DESIGN section 6's: 3 when the node refuses it (``not_permitted``: the key
is not a current validator's, or the change would leave fewer than 4 validators), 4 when it
commits but could not count (reverted: e.g. this validator already voted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ledger.chain.types import SetAction, ValidatorChange
from ledger.cli.nodes import connect, node_option
from ledger.cli.output import CommandError, Output, command_errors, json_option
from ledger.cli.tx_cmd import (
    ask,
    load_sender,
    password_option,
    print_result,
    send,
    wait_option,
)
from ledger.cli.verify import verify_options

#: Gas limit of a vote (it costs ledger.chain.validators.VALIDATOR_CHANGE_GAS).
DEFAULT_VOTE_GAS = 10_000
EXIT_USAGE = 2

key_option = click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="The voting validator's key file (a current member of the set).",
)
name_option = click.option("--name", required=True, help="The validator's name.")


@click.group()
def validators() -> None:
    """Vote validator-set changes (add, remove) and list the set with its epoch."""


@validators.group()
def propose() -> None:
    """Vote to add or remove a validator (signed by a current validator's key)."""


def _vote(
    change: ValidatorChange,
    key_file: Path,
    password_file: Path | None,
    wait: bool,
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    key = load_sender(key_file, password_file)
    with connect(node_url) as client:
        _, doc = send(client, key, change, DEFAULT_VOTE_GAS, wait, genesis_file, trust_node)
    receipt = doc.get("receipt") or {}
    for event in receipt.get("events") or []:
        if event.get("name") == "validator_vote" and len(event.get("args") or []) == 5:
            action, name, votes, quorum, epoch = event["args"]
            doc["vote"] = {
                "action": action,
                "name": name,
                "votes": votes,
                "quorum": quorum,
                "epoch": epoch,
                "state": receipt.get("return"),
            }
            if receipt.get("return") == "scheduled":
                Output(as_json).note(
                    f"{action} {name}: {votes} of {quorum} votes; the new set takes effect "
                    "at the next checkpoint"
                )
            else:
                Output(as_json).note(f"vote recorded: {votes} of {quorum} validators")
    print_result(Output(as_json), doc, wait)


def _options(func: Any) -> Any:
    for decorate in reversed(
        (
            name_option,
            key_option,
            password_option,
            wait_option,
            node_option,
            verify_options,
            json_option,
            command_errors,
        )
    ):
        func = decorate(func)
    return func


def _change(action: SetAction, name: str, pubkey: str = "", p2p: str = "") -> ValidatorChange:
    try:
        key = bytes.fromhex(pubkey)
    except ValueError:
        raise CommandError("--pubkey: expected 64 hex digits", EXIT_USAGE) from None
    try:
        return ValidatorChange(action, name, key, p2p)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


@propose.command("add")
@click.option("--pubkey", required=True, help="The newcomer's Ed25519 public key (hex).")
@click.option("--p2p", required=True, help="The newcomer's peer address, HOST:PORT.")
@_options
def propose_add(
    pubkey: str,
    p2p: str,
    name: str,
    key_file: Path,
    password_file: Path | None,
    wait: bool,
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    """Vote to add validator NAME with key PUBKEY reachable at P2P."""
    change = _change(SetAction.ADD, name, pubkey, p2p)
    _vote(change, key_file, password_file, wait, node_url, genesis_file, trust_node, as_json)


@propose.command("remove")
@_options
def propose_remove(
    name: str,
    key_file: Path,
    password_file: Path | None,
    wait: bool,
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    """Vote to remove validator NAME (refused if fewer than 4 would remain)."""
    change = _change(SetAction.REMOVE, name)
    _vote(change, key_file, password_file, wait, node_url, genesis_file, trust_node, as_json)


@validators.command("list")
@node_option
@json_option
@command_errors
def validators_list(node_url: str | None, as_json: bool) -> None:
    """The active validator set in state: epoch, members (name, public key, p2p), the set
    scheduled for the next checkpoint and pending votes (as the node reports them)."""
    with connect(node_url) as client:
        doc = ask(lambda: client.validator_set())

    def render(console: Console) -> None:
        console.print(
            f"epoch {doc['epoch']} (since height {doc['start_height']}), "
            f"{len(doc['validators'])} validators, quorum {doc['quorum']}"
        )
        for v in doc["validators"]:
            console.print(f"  {v['name']:<10} {v['public_key']}  {v['p2p'] or '(genesis)'}")
        if doc.get("scheduled"):
            names = ", ".join(v["name"] for v in doc["scheduled"]["validators"])
            console.print(f"scheduled for the next checkpoint: epoch {doc['epoch'] + 1}: {names}")
        for p in doc["pending"]:
            console.print(
                f"pending {p['action']} {p['name']}: {len(p['votes'])} of {p['quorum']} votes"
            )
        console.print(f"at block {doc['height']}")

    Output(as_json).emit(doc, render)
