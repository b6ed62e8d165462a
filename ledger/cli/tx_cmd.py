"""`quorum tx`, `quorum contract`, `quorum query`: talk to a running node.

Transaction commands print what happened — hash, status, height, receipt — and exit with
DESIGN section 6's codes: 3 rejected by the node, 4 committed but failed, 5 timeout or
node unreachable, 6 the node's answer did not verify. Reads and committed results are
checked against the genesis by default (ledger/cli/verify.py); ``--trust-node`` skips it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click
from rich.console import Console

from contracts.abi import AbiError, MethodAbi, parse_cli_args
from contracts.container import ContainerError, parse_container
from contracts.interpreter import contract_address
from crypto.hashing import from_hex
from crypto.keyfile import load_key, read_public_info
from crypto.keys import ADDRESS_SIZE, PrivateKey
from ledger.chain.types import Call, Deploy, Payload, ReceiptStatus, Transaction, Transfer
from ledger.cli.contract_compile import contract_compile
from ledger.cli.contract_examples import contract_examples, load_contract
from ledger.cli.nodes import client_error, connect, node_option
from ledger.cli.output import (
    EXIT_FAILED,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CommandError,
    Output,
    command_errors,
    json_option,
)
from ledger.cli.passwords import existing_password
from ledger.cli.verify import light_client, unverified, verify_options
from ledger.client import ClientError, QuorumClient

DEFAULT_TRANSFER_GAS: Final = 10_000
DEFAULT_CONTRACT_GAS: Final = 2_000_000
DEFAULT_WAIT_MS: Final = 30_000

from_option = click.option(
    "--from", "key_file", required=True, type=click.Path(path_type=Path), help="Sender's key file."
)
password_option = click.option(
    "--password-file", type=click.Path(path_type=Path), help="Password of an encrypted key file."
)
wait_option = click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait until the transaction commits."
)


_R = TypeVar("_R")


def ask(request: Callable[[], _R]) -> _R:
    """Run one client request; client failures become DESIGN section 6 exit codes."""
    try:
        return request()
    except ClientError as exc:
        raise client_error(exc) from None


def parse_address(text: str, what: str) -> bytes:
    try:
        return from_hex(text, size=ADDRESS_SIZE, name=what)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def load_sender(key_file: Path, password_file: Path | None) -> PrivateKey:
    info = read_public_info(key_file)
    return load_key(key_file, existing_password(password_file, info.encrypted, key_file))


def _submit(
    client: QuorumClient, key: PrivateKey, payload: Payload, gas: int, wait: bool
) -> tuple[Transaction, dict[str, Any]]:
    try:
        status = client.status()
        account = client.account(key.address)
        tx = Transaction.create(key, status["chain_id"], account["nonce"], payload, gas_limit=gas)
        (result,) = client.submit([tx], wait=wait, timeout_ms=DEFAULT_WAIT_MS)
    except ClientError as exc:
        raise client_error(exc) from None
    return tx, result


def _outcome(result: dict[str, Any], tx: Transaction) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tx_hash": tx.hash.hex(),
        **{k: v for k, v in result.items() if k != "tx_hash"},
    }
    receipt = doc.get("receipt")
    if receipt:
        doc.setdefault("gas_used", receipt["gas_used"])
        doc.setdefault("return", receipt["return"])
        doc.setdefault("events", receipt["events"])
        if receipt.get("created_address"):
            doc.setdefault("address", receipt["created_address"])
    return doc


def _verified_commit(
    client: QuorumClient, genesis_file: Path | None, trust_node: bool, doc: dict[str, Any]
) -> dict[str, Any]:
    """A committed (or failed) answer, re-read with its inclusion proof and checked: the
    status, height and receipt printed are the proven ones."""
    if doc.get("status") not in ("committed", "failed"):
        return doc
    if trust_node:
        return {**doc, "verified": False}
    from ledger.light import VerificationError
    from ledger.render import receipt_json

    try:
        light = light_client(genesis_file)
    except CommandError as exc:
        if genesis_file is not None:
            raise
        # The transaction went through either way; what was not checked is marked so.
        click.echo(f"warning: {exc.message}; the result below is the node's word", err=True)
        return {**doc, "verified": False}
    digest = bytes.fromhex(doc["tx_hash"])
    answer = ask(lambda: client.transaction(digest, proof=True))
    if answer is None:
        raise unverified(f"the node said {doc['tx_hash']} committed, then that it does not know it")
    try:
        proven = light.verify_transaction(digest, answer)
    except VerificationError as exc:
        raise unverified(str(exc)) from None
    receipt = receipt_json(proven.receipt)
    status = "committed" if proven.receipt.status == ReceiptStatus.SUCCESS else "failed"
    out = {**doc, "status": status, "height": proven.height, "receipt": receipt, "verified": True}
    for key in ("gas_used", "return", "events"):
        if key in out:
            out[key] = receipt["gas_used" if key == "gas_used" else key]
    if receipt.get("created_address"):
        out["address"] = receipt["created_address"]
    return out


def send(
    client: QuorumClient,
    key: PrivateKey,
    payload: Payload,
    gas: int,
    wait: bool,
    genesis_file: Path | None,
    trust_node: bool,
) -> tuple[Transaction, dict[str, Any]]:
    """Sign ``payload`` with the sender's next nonce, submit it, and return the answer —
    when it committed, re-read with its inclusion proof and checked against the genesis."""
    tx, result = _submit(client, key, payload, gas, wait)
    return tx, _verified_commit(client, genesis_file, trust_node, _outcome(result, tx))


def print_result(out: Output, doc: dict[str, Any], wait: bool) -> None:
    def render(console: Console) -> None:
        console.print(f"transaction {doc['tx_hash']}")
        console.print(
            f"status      {doc['status']}"
            + (f" ({doc.get('code')}: {doc.get('error')})" if doc["status"] == "rejected" else "")
        )
        if "height" in doc:
            verified = doc.get("verified")
            checked = (
                ""
                if verified is None
                else "  (verified)"
                if verified
                else "  (not verified: --trust-node)"
            )
            console.print(f"height      {doc['height']}{checked}")
        if doc.get("address"):
            console.print(f"address     {doc['address']}")
        receipt = doc.get("receipt")
        if receipt:
            console.print(f"gas used    {receipt['gas_used']}")
            if receipt["return"] is not None:
                console.print(f"returned    {receipt['return']}")
            for event in receipt["events"]:
                console.print(
                    f"event       {event['name']}({', '.join(str(a) for a in event['args'])})"
                )
            if receipt["error"]:
                console.print(f"error       {receipt['error']}")

    out.emit(doc, render)
    status = doc["status"]
    if status == "rejected":
        raise SystemExit(EXIT_REJECTED)
    if status == "failed":
        raise SystemExit(EXIT_FAILED)
    if wait and status == "pending":
        click.echo("timed out waiting for the transaction to commit", err=True)
        raise SystemExit(EXIT_UNREACHABLE)


@click.group()
def tx() -> None:
    """Send transfers and look up transactions."""


@tx.command("transfer")
@from_option
@click.option("--to", "to", required=True, help="Recipient address (hex).")
@click.option("--amount", type=click.IntRange(0, 2**64 - 1), required=True)
@click.option(
    "--gas", type=click.IntRange(1, 2**64 - 1), default=DEFAULT_TRANSFER_GAS, show_default=True
)
@password_option
@wait_option
@node_option
@verify_options
@json_option
@command_errors
def tx_transfer(
    key_file: Path,
    to: str,
    amount: int,
    gas: int,
    password_file: Path | None,
    wait: bool,
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    """Transfer native currency; prints the hash, status, height and receipt."""
    key = load_sender(key_file, password_file)
    with connect(node_url) as client:
        _, doc = send(
            client,
            key,
            Transfer(parse_address(to, "--to"), amount),
            gas,
            wait,
            genesis_file,
            trust_node,
        )
    print_result(Output(as_json), doc, wait)


@tx.command("status")
@click.argument("tx_hash")
@node_option
@verify_options
@json_option
@command_errors
def tx_status(
    tx_hash: str, node_url: str | None, genesis_file: Path | None, trust_node: bool, as_json: bool
) -> None:
    """Status and receipt of a transaction (a committed one proven in its block)."""
    try:
        digest = from_hex(tx_hash, size=32, name="TXHASH")
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    with connect(node_url) as client:
        found = ask(lambda: client.transaction(digest, proof=not trust_node))
        if found is None:
            raise CommandError(
                f"transaction {tx_hash} is not known to this node (not committed, not pending)"
            )
        if found.get("status") in ("committed", "failed"):
            doc = _verified_commit(client, genesis_file, trust_node, dict(found))
            doc.pop("proof", None)
            doc.pop("raw", None)
        else:  # pending or dropped: no block to prove anything against
            doc = {**found, "verified": False}

    def render(console: Console) -> None:
        for key in ("tx_hash", "status", "height", "sender", "nonce", "kind", "code", "error"):
            if doc.get(key) is not None:
                console.print(f"{key:<10} {doc[key]}")
        receipt = doc.get("receipt")
        if receipt:
            console.print(f"{'gas_used':<10} {receipt['gas_used']}")
            if receipt["error"]:
                console.print(f"{'error':<10} {receipt['error']}")
        console.print(
            "verified   yes: included in a block certified by a quorum of the genesis validators"
            if doc.get("verified")
            else "verified   no: this is the node's word (pending, dropped, or --trust-node)"
        )

    Output(as_json).emit(doc, render)


# ----------------------------------------------------------------------------- contracts


@click.group()
def contract() -> None:
    """Deploy contracts, call them, and query them read-only."""


def _method_abi(code: bytes, method: str | None) -> MethodAbi | None:
    try:
        abi = parse_container(code).abi
    except ContainerError as exc:
        raise CommandError(f"not a contract container: {exc}") from None
    if method is None:
        return abi.constructor
    found = abi.method(method)
    if found is None:
        names = ", ".join(m.name for m in abi.methods)
        raise CommandError(f"the contract has no method {method!r} (it has: {names})", EXIT_USAGE)
    return found


def _typed_args(method: MethodAbi | None, args: tuple[str, ...]) -> tuple[Any, ...]:
    if method is None:
        if args:
            raise CommandError("this contract's constructor takes no arguments", EXIT_USAGE)
        return ()
    try:
        return parse_cli_args(method, list(args))
    except AbiError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


contract.add_command(contract_examples)
contract.add_command(contract_compile)


@contract.command("deploy")
@click.argument("contract_ref", metavar="FILE_OR_EXAMPLE")
@from_option
@click.option("--args", "args", multiple=True, help="A constructor argument (repeat, in order).")
@click.option(
    "--gas", type=click.IntRange(1, 2**64 - 1), default=DEFAULT_CONTRACT_GAS, show_default=True
)
@password_option
@wait_option
@node_option
@verify_options
@json_option
@command_errors
def contract_deploy(
    contract_ref: str,
    key_file: Path,
    args: tuple[str, ...],
    gas: int,
    password_file: Path | None,
    wait: bool,
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    """Deploy a contract: a .py file (compiled here; a compile error exits 2 and sends
    nothing), a .qasm or container file, or a shipped example (token, token.py...)."""
    code = load_contract(contract_ref)
    values = _typed_args(_method_abi(code, None), args)
    key = load_sender(key_file, password_file)
    with connect(node_url) as client:
        tx, doc = send(client, key, Deploy(code, values), gas, wait, genesis_file, trust_node)
    doc.setdefault("address", contract_address(key.address, tx.nonce).hex())
    print_result(Output(as_json), doc, wait)


def _remote_method(client: QuorumClient, address: bytes, method: str) -> MethodAbi | None:
    found = ask(lambda: client.contract(address))
    if found is None:
        raise CommandError(f"no contract at {address.hex()}")
    return _method_abi(bytes.fromhex(found["code"]), method)


@contract.command("call")
@click.argument("address")
@click.argument("method")
@click.argument("args", nargs=-1)
@from_option
@click.option(
    "--gas", type=click.IntRange(1, 2**64 - 1), default=DEFAULT_CONTRACT_GAS, show_default=True
)
@click.option(
    "--value",
    type=click.IntRange(0, 2**64 - 1),
    default=0,
    help="Native currency sent with the call.",
)
@password_option
@wait_option
@node_option
@verify_options
@json_option
@command_errors
def contract_call(
    address: str,
    method: str,
    args: tuple[str, ...],
    key_file: Path,
    gas: int,
    value: int,
    password_file: Path | None,
    wait: bool,
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    """Call METHOD of the contract at ADDRESS with typed ARGS (e.g. transfer <addr> 250)."""
    target = parse_address(address, "ADDRESS")
    key = load_sender(key_file, password_file)
    with connect(node_url) as client:
        values = _typed_args(_remote_method(client, target, method), args)
        _, doc = send(
            client, key, Call(target, method, values, value), gas, wait, genesis_file, trust_node
        )
    print_result(Output(as_json), doc, wait)


@contract.command("query")
@click.argument("address")
@click.argument("method")
@click.argument("args", nargs=-1)
@node_option
@verify_options
@json_option
@command_errors
def contract_query(
    address: str,
    method: str,
    args: tuple[str, ...],
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    """Run a read-only METHOD against committed state (no transaction); the result is
    checked by running it again here on the state the node proves it read."""
    target = parse_address(address, "ADDRESS")
    with connect(node_url) as client:
        result = ask(lambda: client.query(target, method, list(args), proof=not trust_node))
    if trust_node:
        doc = {"address": target.hex(), "method": method, **result, "verified": False}
    else:
        from ledger.light import VerificationError

        try:
            mine = light_client(genesis_file).verify_query(target, method, list(args), result)
        except VerificationError as exc:
            raise unverified(str(exc)) from None
        doc = {"address": target.hex(), "method": method, **mine, "verified": True}
    Output(as_json).emit(
        doc,
        lambda c: c.print(
            (
                f"{doc['return']}"
                if doc["status"] == "success"
                else f"{doc['status']}: {doc['error']}"
            )
            + (" (verified)" if doc["verified"] else " (not verified: --trust-node)")
        ),
    )
    if doc["status"] != "success":
        raise SystemExit(EXIT_FAILED)


# ----------------------------------------------------------------------------- queries


@click.group()
def query() -> None:
    """Read accounts and blocks."""


@query.command("account")
@click.argument("address")
@node_option
@verify_options
@json_option
@command_errors
def query_account(
    address: str, node_url: str | None, genesis_file: Path | None, trust_node: bool, as_json: bool
) -> None:
    """Balance and nonce of ADDRESS, proven against a certified state root."""
    target = parse_address(address, "ADDRESS")
    with connect(node_url) as client:
        if trust_node:
            doc = {**ask(lambda: client.account(target)), "verified": False}
        else:
            from ledger.light import VerificationError

            light = light_client(genesis_file)
            answer = ask(lambda: client.account(target, proof=True))
            try:
                head, account, is_contract = light.verify_account(target, answer)
            except VerificationError as exc:
                raise unverified(str(exc)) from None
            doc = {
                "address": target.hex(),
                "balance": account.balance,
                "nonce": account.nonce,
                "contract": is_contract,
                "height": head.height,
                "verified": True,
            }
    Output(as_json).emit(
        doc,
        lambda c: c.print(
            f"address {doc['address']}\nbalance {doc['balance']:,}\nnonce   {doc['nonce']}\n"
            + (
                f"verified at block {doc['height']} (state proof, commit certificate)"
                if doc["verified"]
                else "not verified (--trust-node)"
            )
        ),
    )


@query.command("storage")
@click.argument("address")
@click.argument("key")
@node_option
@verify_options
@json_option
@command_errors
def query_storage(
    address: str,
    key: str,
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    """One storage slot (KEY in hex) of the contract at ADDRESS, proven."""
    target = parse_address(address, "ADDRESS")
    try:
        slot = from_hex(key, name="KEY")
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    with connect(node_url) as client:
        answer = ask(lambda: client.storage(target, slot))
    doc = {k: answer.get(k) for k in ("address", "key", "value", "height")}
    if trust_node:
        doc["verified"] = False
    else:
        from ledger.light import VerificationError

        try:
            head, value = light_client(genesis_file).verify_storage(target, slot, answer)
        except VerificationError as exc:
            raise unverified(str(exc)) from None
        doc.update(value=None if value is None else value.hex(), height=head.height, verified=True)
    Output(as_json).emit(
        doc,
        lambda c: c.print(
            f"{doc['address']}[{doc['key']}] = {doc['value'] or '(absent)'} at block {doc['height']}"
            + (" (verified)" if doc["verified"] else " (not verified: --trust-node)")
        ),
    )


@query.command("block")
@click.argument("height", required=False, type=click.IntRange(0, 2**64 - 1))
@node_option
@verify_options
@json_option
@command_errors
def query_block(
    height: int | None,
    node_url: str | None,
    genesis_file: Path | None,
    trust_node: bool,
    as_json: bool,
) -> None:
    """A committed block (the latest without HEIGHT), its commit certificate checked."""
    with connect(node_url) as client:
        found = ask(lambda: client.block(height))
    if found is None:
        raise CommandError(f"no block at height {height}")
    doc = dict(found)
    if trust_node:
        doc["verified"] = False
    else:
        from ledger.light import VerificationError

        try:
            header, _ = light_client(genesis_file).verify_block(doc)
        except VerificationError as exc:
            raise unverified(str(exc)) from None
        if height is not None and header.height != height:
            raise unverified(f"asked for block {height}, the node sent block {header.height}")
        doc["verified"] = True

    def render(console: Console) -> None:
        header = doc["header"]
        console.print(f"block {doc['height']}  {doc['hash']}")
        console.print(
            f"view {header['view']}  proposer {header['proposer']}  time {header['timestamp_ms']}  txs {header['tx_count']}"
        )
        console.print(f"prev  {header['prev_hash']}\nstate {header['state_root']}")
        cert = doc["certificate"]
        if cert:
            console.print(
                f"certified by validators {', '.join(str(v['validator']) for v in cert['votes'])}"
                + (" (signatures verified)" if doc["verified"] else " (not verified)")
            )

    Output(as_json).emit(doc, render)
