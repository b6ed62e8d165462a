"""`quorum permissions`: grant and revoke client roles, and list who holds them.

A grant or revoke is a role-change transaction signed by an admin's key (ledger/chain/roles.py):
with an admin threshold k it is a vote, applied in the block that commits the k-th distinct
admin's vote for the same change. Exit codes are DESIGN section 6's: 3 when the node refuses
it (``not_permitted``: the key is not an admin), 4 when it commits but could not apply
(reverted: e.g. the address already holds the role). The listing is proven against the
genesis by default, like the other reads (ledger/cli/verify.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ledger.chain.types import Role, RoleAction, RoleChange
from ledger.cli.nodes import connect, node_option
from ledger.cli.output import Output, command_errors, json_option
from ledger.cli.tx_cmd import (
    ask,
    from_option,
    load_sender,
    parse_address,
    password_option,
    print_result,
    send,
    wait_option,
)
from ledger.cli.verify import light_client, unverified, verify_options

#: Gas limit of a role change (it costs ledger.chain.roles.ROLE_CHANGE_GAS).
DEFAULT_ROLE_GAS = 10_000

role_option = click.option(
    "--role",
    type=click.Choice([str(r) for r in Role]),
    required=True,
    help="submit: send transactions; deploy: create contracts; admin: change roles.",
)


@click.group()
def permissions() -> None:
    """Grant and revoke client roles (submit, deploy, admin) and list who holds them."""


def _vote_summary(doc: dict[str, Any]) -> dict[str, Any] | None:
    """What the committed vote did, from its receipt's ``role_vote`` event."""
    receipt = doc.get("receipt") or {}
    for event in receipt.get("events") or []:
        if event.get("name") == "role_vote" and len(event.get("args") or []) == 5:
            action, role, address, votes, threshold = event["args"]
            return {
                "action": action,
                "role": role,
                "address": address,
                "state": receipt.get("return"),
                "votes": votes,
                "threshold": threshold,
            }
    return None


def _change(
    action: RoleAction,
    address: str,
    role: str,
    key_file: Path,
    password_file: Path | None,
    wait: bool,
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    change = RoleChange(action, Role(role), parse_address(address, "ADDRESS"))
    key = load_sender(key_file, password_file)
    with connect(node_url) as client:
        _, doc = send(client, key, change, DEFAULT_ROLE_GAS, wait, genesis_file, trust_node)
    summary = _vote_summary(doc)
    if summary is not None:
        doc["permission"] = summary
        if summary["state"] == "pending":
            Output(as_json).note(
                f"vote recorded: {summary['votes']} of {summary['threshold']} admins; the "
                f"change applies when {summary['threshold']} admins have voted for it"
            )
        else:
            Output(as_json).note(f"{action} applied: {summary['address']} {role}")
    print_result(Output(as_json), doc, wait)


def _change_options(func: Any) -> Any:
    for decorate in reversed(
        (
            click.argument("address"),
            role_option,
            from_option,
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


def _role_change_command(action: RoleAction, help_text: str) -> click.Command:
    """``quorum permissions grant|revoke``: the same options, one action each."""

    def run(address: str, role: str, **options: Any) -> None:
        _change(action, address, role, **options)

    return permissions.command(action.value, help=help_text)(_change_options(run))


permissions_grant = _role_change_command(
    RoleAction.GRANT,
    "Give ROLE to the account at ADDRESS (signed by an admin key; a vote when the admin "
    "threshold is above 1).",
)
permissions_revoke = _role_change_command(
    RoleAction.REVOKE,
    "Take ROLE from the account at ADDRESS (signed by an admin key; a vote when the admin "
    "threshold is above 1).",
)


@permissions.command("list")
@node_option
@verify_options
@json_option
@command_errors
def permissions_list(
    node_url: str | None, genesis_file: Path | None, trust_node: bool, as_json: bool
) -> None:
    """Every role and its holders, the admin threshold, and pending role changes (proven
    against the genesis: the listing is complete, not just true)."""
    with connect(node_url) as client:
        answer = ask(lambda: client.permissions(proof=not trust_node))
    if trust_node:
        doc = {k: v for k, v in answer.items() if k != "proof"}
        doc["verified"] = False
    else:
        from ledger.light import VerificationError

        try:
            head, table = light_client(genesis_file).verify_permissions(answer)
        except VerificationError as exc:
            raise unverified(str(exc)) from None
        doc = {**table.to_json(), "height": head.height, "verified": True}

    def render(console: Console) -> None:
        for role, holders in doc["roles"].items():
            if holders == "any":
                console.print(f"{role:<7} any account")
            else:
                console.print(f"{role:<7} {len(holders)} account(s)")
                for holder in holders:
                    console.print(f"        {holder}")
        admins = doc["roles"]["admin"]
        count = len(admins) if isinstance(admins, list) else 0
        console.print(
            f"admin threshold {doc['admin_threshold']} of {count}: a role change applies when "
            f"{doc['admin_threshold']} admin(s) have voted for it"
        )
        for p in doc["pending"]:
            console.print(
                f"pending {p['action']} {p['role']} {p['address']}: "
                f"{len(p['votes'])} of {p['threshold']} votes"
            )
        console.print(
            f"at block {doc['height']}"
            + (
                " (verified: state proof, commit certificate)"
                if doc["verified"]
                else " (not verified: --trust-node)"
            )
        )

    Output(as_json).emit(doc, render)
