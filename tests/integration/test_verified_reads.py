"""Verifiable reads from one untrusted node (issue 14): a real network, honest answers that
verify, and a lying node — every field it could change, changed one at a time — that the
light client and the CLI refuse or see through.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from crypto.keyfile import load_key
from genesis.document import load_genesis
from ledger.chain.types import BlockHeader, CommitCertificate, Receipt, ReceiptStatus
from ledger.client import QuorumClient
from ledger.light import LightClient, VerificationError
from tests.integration.netutil import free_base_port, quorum, quorum_json

pytestmark = pytest.mark.slow

Doc = dict[str, Any]


@dataclasses.dataclass
class World:
    dir: Path
    rpc: str
    light: LightClient
    accounts: list[Path]
    addresses: list[str]
    tx_hash: str
    height: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("verified") / "testnet"
    quorum(
        "testnet", "init", "--validators", "4", "--dir", directory,
        "--base-port", str(free_base_port(8)), "--accounts", "3",
    )  # fmt: skip
    quorum("testnet", "start", "--dir", directory)
    try:
        manifest = json.loads((directory / "testnet.json").read_text())
        rpc = manifest["nodes"][0]["rpc"]
        accounts = [directory / a["file"] for a in manifest["accounts"]]
        addresses = [a["address"] for a in manifest["accounts"]]
        genesis = directory / "node0" / "genesis.json"
        sent = quorum_json(
            "tx", "transfer", "--from", accounts[0], "--to", addresses[1], "--amount", "7",
            "--node", rpc, "--genesis", genesis,
        )  # fmt: skip
        assert sent["status"] == "committed" and sent["verified"] is True
        yield World(
            directory,
            rpc,
            LightClient(load_genesis(genesis)),
            accounts,
            addresses,
            sent["tx_hash"],
            sent["height"],
        )
    finally:
        quorum("testnet", "stop", "--dir", directory, check=False)


def _flip_hex(text: str, at: int = -1) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[at] ^= 1
    return raw.hex()


def _header_with(raw_hex: str, **changes: Any) -> str:
    return dataclasses.replace(BlockHeader.decode(bytes.fromhex(raw_hex)), **changes).raw.hex()


def _certificate_with(
    raw_hex: str, change: Callable[[CommitCertificate], CommitCertificate]
) -> str:
    return change(CommitCertificate.decode(bytes.fromhex(raw_hex))).encode().hex()


def _duplicate_signer(c: CommitCertificate) -> CommitCertificate:
    first = c.votes[0]
    return CommitCertificate(c.view, c.height, c.block_hash, (first, first, *c.votes[2:]))


def _too_few(c: CommitCertificate) -> CommitCertificate:
    return CommitCertificate(c.view, c.height, c.block_hash, c.votes[:-1])


def _unknown_signer(c: CommitCertificate) -> CommitCertificate:
    return CommitCertificate(c.view, c.height, c.block_hash, (*c.votes[:-1], (9, c.votes[-1][1])))


def _other_view(c: CommitCertificate) -> CommitCertificate:
    return CommitCertificate(c.view + 1, c.height, c.block_hash, c.votes)


def _set(path: tuple[Any, ...], value: Callable[[Any], Any]) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(target[path[-1]])

    return apply


ACCOUNT_LIES: dict[str, Callable[[Doc], None]] = {
    "balance": _set(("balance",), lambda v: v + 1),
    "nonce": _set(("nonce",), lambda v: v + 1),
    "contract flag": _set(("contract",), lambda v: not v),
    "proven value": _set(("proof", "state", 0, "value"), lambda v: _flip_hex(v)),
    "value removed (claims absent)": _set(("proof", "state", 0, "value"), lambda v: None),
    "smt proof bytes": _set(("proof", "state", 0, "proof"), lambda v: _flip_hex(v, -3)),
    "state key": _set(("proof", "state", 0, "key"), lambda v: _flip_hex(v)),
    "state root in header": _set(
        ("proof", "header"), lambda v: _header_with(v, state_root=bytes(32))
    ),
    "header height": _set(("proof", "header"), lambda v: _header_with(v, height=999)),
    "proof height": _set(("proof", "height"), lambda v: v + 1),
    "genesis claimed": _set(("proof", "header"), lambda v: None),
    "signature byte": _set(("proof", "certificate"), lambda v: _flip_hex(v, -5)),
    "duplicate signer": _set(
        ("proof", "certificate"), lambda v: _certificate_with(v, _duplicate_signer)
    ),
    "too few signers": _set(("proof", "certificate"), lambda v: _certificate_with(v, _too_few)),
    "non-validator signer": _set(
        ("proof", "certificate"), lambda v: _certificate_with(v, _unknown_signer)
    ),
    "certificate for another view": _set(
        ("proof", "certificate"), lambda v: _certificate_with(v, _other_view)
    ),
    "header encoding": _set(("proof", "header"), lambda v: v + "00"),
}


def _failed_receipt(raw_hex: str) -> str:
    receipt = Receipt.decode(bytes.fromhex(raw_hex))
    return dataclasses.replace(receipt, status=ReceiptStatus.REVERTED).raw.hex()


TX_LIES: dict[str, Callable[[Doc], None]] = {
    "height": _set(("height",), lambda v: v + 1),
    "raw transaction": _set(("raw",), lambda v: _flip_hex(v, 10)),
    "position": _set(("proof", "position"), lambda v: v + 1),
    "tx count": _set(("proof", "tx_count"), lambda v: v + 1),
    "tx path": _set(("proof", "tx_path"), lambda v: [*v, "00" * 32]),
    "receipt status": _set(("proof", "receipt"), _failed_receipt),
    "receipt path": _set(("proof", "receipt_path"), lambda v: [*v, "11" * 32]),
    "tx_root in header": _set(("proof", "header"), lambda v: _header_with(v, tx_root=bytes(32))),
    "block height of proof": _set(("proof", "height"), lambda v: v + 1),
    "signature byte": _set(("proof", "certificate"), lambda v: _flip_hex(v, -5)),
    "duplicate signer": _set(
        ("proof", "certificate"), lambda v: _certificate_with(v, _duplicate_signer)
    ),
}

BLOCK_LIES: dict[str, Callable[[Doc], None]] = {
    "header": _set(("header_raw",), lambda v: _header_with(v, timestamp_ms=1)),
    "hash": _set(("hash",), lambda v: _flip_hex(v)),
    "transactions": _set(("transactions",), lambda v: [*v, "22" * 32]),
    "certificate": _set(("certificate_raw",), lambda v: _certificate_with(v, _too_few)),
    "no certificate": _set(("certificate_raw",), lambda v: None),
}


def test_honest_answers_verify(world: World) -> None:
    with QuorumClient(world.rpc) as c:
        address = bytes.fromhex(world.addresses[1])
        head, account, is_contract = world.light.verify_account(
            address, c.account(address, proof=True)
        )
        assert account.balance > 0 and not is_contract and head.height >= world.height
        absent = bytes(20)
        _, nobody, _ = world.light.verify_account(absent, c.account(absent, proof=True))
        assert (nobody.balance, nobody.nonce) == (0, 0)  # proven absent, not taken on trust
        tx_hash = bytes.fromhex(world.tx_hash)
        proven = world.light.verify_transaction(tx_hash, c.transaction(tx_hash, proof=True))
        assert proven.height == world.height and proven.receipt.status == ReceiptStatus.SUCCESS
        header, hashes = world.light.verify_block(c.block(world.height))
        assert tx_hash in hashes and header.height == world.height


@pytest.mark.parametrize("lie", sorted(ACCOUNT_LIES))
def test_a_lie_about_an_account_is_refused(world: World, lie: str) -> None:
    address = bytes.fromhex(world.addresses[1])
    with QuorumClient(world.rpc) as c:
        doc = c.account(address, proof=True)
    ACCOUNT_LIES[lie](doc)
    with pytest.raises(VerificationError):
        world.light.verify_account(address, doc)


@pytest.mark.parametrize("lie", sorted(TX_LIES))
def test_a_lie_about_a_transaction_is_refused(world: World, lie: str) -> None:
    tx_hash = bytes.fromhex(world.tx_hash)
    with QuorumClient(world.rpc) as c:
        doc = c.transaction(tx_hash, proof=True)
    assert doc is not None
    TX_LIES[lie](doc)
    with pytest.raises(VerificationError):
        world.light.verify_transaction(tx_hash, doc)


@pytest.mark.parametrize("lie", sorted(BLOCK_LIES))
def test_a_lie_about_a_block_is_refused(world: World, lie: str) -> None:
    with QuorumClient(world.rpc) as c:
        doc = c.block(world.height)
    assert doc is not None
    BLOCK_LIES[lie](doc)
    with pytest.raises(VerificationError):
        world.light.verify_block(doc)


class LyingProxy:
    """A node in front of the real one that rewrites its JSON answers."""

    def __init__(self, upstream: str, lie: Callable[[str, Doc], None]) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                answer = httpx.request(
                    method, upstream + self.path, content=body, timeout=30,
                    headers={"content-type": "application/json"},
                )  # fmt: skip
                payload = answer.content
                if answer.headers.get("content-type", "").startswith("application/json"):
                    doc = answer.json()
                    if isinstance(doc, dict):
                        proxy.lie(self.path, doc)
                    payload = json.dumps(doc).encode()
                self.send_response(answer.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._relay("GET")

            def do_POST(self) -> None:
                self._relay("POST")

        self.lie = lie
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _on(path_part: str, change: Callable[[Doc], None]) -> Callable[[str, Doc], None]:
    def lie(path: str, doc: Doc) -> None:
        if path_part in path:
            # Nothing of that shape in some answers (e.g. asked without a proof).
            with contextlib.suppress(KeyError, IndexError, TypeError):
                change(doc)

    return lie


def test_the_cli_refuses_a_lying_node_and_says_so_when_told_to_trust(world: World) -> None:
    genesis = world.dir / "node0" / "genesis.json"
    address = world.addresses[1]
    with QuorumClient(world.rpc) as c:
        truth = c.account(bytes.fromhex(address))["balance"]
    lies = {
        "/v1/accounts/": _set(("balance",), lambda v: v + 1_000),
        "/v1/transactions/": _set(("proof", "receipt"), _failed_receipt),
        "/v1/blocks/": _set(("transactions",), lambda v: v[1:]),
    }
    commands = {
        "/v1/accounts/": ("query", "account", address),
        "/v1/transactions/": ("tx", "status", world.tx_hash),
        "/v1/blocks/": ("query", "block", str(world.height)),
    }
    for part, change in lies.items():
        proxy = LyingProxy(world.rpc, _on(part, copy.deepcopy(change)))
        try:
            refused = quorum(
                *commands[part], "--node", proxy.url, "--genesis", genesis, "--json", check=False
            )
            assert refused.returncode == 6, (part, refused.stdout, refused.stderr)
            assert "not verified" in refused.stderr
            trusted = quorum_json(*commands[part], "--node", proxy.url, "--trust-node")
            assert trusted["verified"] is False
        finally:
            proxy.close()
    honest = LyingProxy(world.rpc, lambda path, doc: None)
    try:
        doc = quorum_json("query", "account", address, "--node", honest.url, "--genesis", genesis)
        assert doc["verified"] is True and doc["balance"] == truth
    finally:
        honest.close()


def test_a_transfer_prints_only_what_it_proved(world: World) -> None:
    genesis = world.dir / "node0" / "genesis.json"
    key = load_key(world.accounts[2], None)
    proxy = LyingProxy(world.rpc, _on("/v1/transactions/", _set(("height",), lambda v: v + 5)))
    try:
        refused = quorum(
            "tx", "transfer", "--from", world.accounts[2], "--to", world.addresses[0],
            "--amount", "1", "--node", proxy.url, "--genesis", genesis, "--json", check=False,
        )  # fmt: skip
        assert refused.returncode == 6, refused.stderr
    finally:
        proxy.close()
    with QuorumClient(world.rpc) as c:
        assert c.account(key.address)["nonce"] >= 1  # it did commit; the lie was only told


QUERY_LIES: dict[str, Callable[[Doc], None]] = {
    "return value": _set(("return",), lambda v: v + 1),
    "gas used": _set(("gas_used",), lambda v: v - 1),
    "status": _set(("status",), lambda v: "reverted"),
    "a proven storage value": _set(("proof", "state", -1, "value"), lambda v: _flip_hex(v)),
    "a read left unproven": _set(("proof", "state"), lambda v: v[:-1]),
    "state root": _set(("proof", "header"), lambda v: _header_with(v, state_root=bytes(32))),
}


@pytest.fixture(scope="module")
def token(world: World) -> str:
    root = Path(__file__).resolve().parents[2]
    deployed = quorum_json(
        "contract", "deploy", root / "contracts" / "examples" / "token.qasm",
        "--from", world.accounts[1], "--args", "500", "--node", world.rpc,
        "--genesis", world.dir / "node0" / "genesis.json",
    )  # fmt: skip
    assert deployed["status"] == "committed" and deployed["verified"] is True
    return str(deployed["address"])


def test_a_contract_query_is_run_again_on_proven_state(world: World, token: str) -> None:
    holder = [world.addresses[1]]
    with QuorumClient(world.rpc) as c:
        honest = c.query(token, "balance_of", holder, proof=True)
    mine = world.light.verify_query(bytes.fromhex(token), "balance_of", holder, honest)
    assert mine["return"] == 500 and mine["status"] == "success"
    for lie, change in QUERY_LIES.items():
        doc = copy.deepcopy(honest)
        change(doc)
        with pytest.raises(VerificationError):
            world.light.verify_query(bytes.fromhex(token), "balance_of", holder, doc)
            pytest.fail(f"the lie about the {lie} went through")
