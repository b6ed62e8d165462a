"""A real 4-validator network: processes started through the CLI, on free ports.

Checks the product's promises end to end: transfers from several accounts commit and every
node agrees on the head and balances; a killed backup and then a killed primary do not stop
the network (PBFT view change, Castro & Liskov OSDI'99 §4.4); restarted nodes catch up to
the same head (§4.3 state transfer, here by certified blocks); contracts through the CLI;
strangers refused on the peer port; malformed HTTP gets 4xx.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crypto.handshake import Handshake, HandshakeError, Role
from crypto.keyfile import load_key
from crypto.keys import PrivateKey
from genesis.document import load_genesis
from ledger.chain.types import Transaction, Transfer
from ledger.client import ClientError, QuorumClient
from tests.integration.netutil import free_base_port, quorum, quorum_json, wait_until

pytestmark = pytest.mark.slow


class Net:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.manifest = json.loads((directory / "testnet.json").read_text())
        self.nodes = {n["name"]: n for n in self.manifest["nodes"]}
        self.accounts = [directory / a["file"] for a in self.manifest["accounts"]]
        self.addresses = [a["address"] for a in self.manifest["accounts"]]

    def rpc(self, name: str) -> str:
        return str(self.nodes[name]["rpc"])

    def status(self) -> dict[str, dict[str, Any]]:
        doc = quorum_json("testnet", "status", "--dir", self.dir)
        return {n["name"]: n for n in doc["nodes"]}

    def pid(self, name: str) -> int:
        return int((self.dir / name / "node.pid").read_text())

    def client(self, name: str) -> QuorumClient:
        return QuorumClient(self.rpc(name), timeout_s=30)

    def heights(self, names: list[str]) -> dict[str, tuple[int, str]]:
        out = {}
        for name in names:
            with self.client(name) as c:
                s = c.status()
                out[name] = (s["height"], s["head_hash"])
        return out

    def converged(self, names: list[str], at_least: int) -> dict[str, tuple[int, str]] | None:
        heights = self.heights(names)
        values = set(heights.values())
        if len(values) == 1 and next(iter(values))[0] >= at_least:
            return heights
        return None


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    directory = tmp_path_factory.mktemp("net") / "testnet"
    base = free_base_port(8)
    quorum(
        "testnet",
        "init",
        "--validators",
        "4",
        "--dir",
        directory,
        "--base-port",
        str(base),
        "--accounts",
        "6",
    )
    quorum("testnet", "start", "--dir", directory)
    try:
        yield Net(directory)
    finally:
        quorum("testnet", "stop", "--dir", directory, check=False)


def transfer(net: Net, account: int, to: int, amount: int, node: str) -> dict[str, Any]:
    return quorum_json(
        "tx", "transfer", "--from", net.accounts[account], "--to", net.addresses[to],
        "--amount", str(amount), "--node", net.rpc(node),
    )  # fmt: skip


def test_transfers_commit_and_every_node_agrees(net: Net) -> None:
    results = [transfer(net, i, (i + 1) % 6, 100 + i, f"node{i % 4}") for i in range(4)]
    assert all(r["status"] == "committed" and r["height"] >= 1 for r in results)
    top = max(r["height"] for r in results)
    wait_until(
        "all nodes at the same head",
        lambda: net.converged(["node0", "node1", "node2", "node3"], top),
    )
    balances = []
    for name in ("node0", "node1", "node2", "node3"):
        with net.client(name) as c:
            balances.append([c.account(a)["balance"] for a in net.addresses])
            for r in results:
                found = c.transaction(r["tx_hash"])
                assert (
                    found is not None
                    and found["status"] == "committed"
                    and found["height"] == r["height"]
                )
    assert all(b == balances[0] for b in balances)
    start = load_genesis(net.dir / "node0" / "genesis.json").accounts[0].balance
    # account i paid account i+1 the amount 100+i, for i = 0..3
    assert balances[0][:5] == [start - 100, start - 1, start - 1, start - 1, start + 103]


def test_contract_deploy_call_query_through_the_cli(net: Net) -> None:
    token = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "token.qasm"
    deployed = quorum_json(
        "contract",
        "deploy",
        token,
        "--from",
        net.accounts[4],
        "--args",
        "1000",
        "--node",
        net.rpc("node1"),
    )
    assert deployed["status"] == "committed"
    address = deployed["address"]
    called = quorum_json(
        "contract",
        "call",
        address,
        "transfer",
        net.addresses[5],
        "250",
        "--from",
        net.accounts[4],
        "--node",
        net.rpc("node2"),
    )
    assert called["status"] == "committed" and called["return"] == 1
    assert [e["name"] for e in called["events"]] == ["Transfer"]
    wait_until("node3 has the call", lambda: net.converged(["node2", "node3"], called["height"]))
    queried = quorum_json(
        "contract", "query", address, "balance_of", net.addresses[5], "--node", net.rpc("node3"),
        "--genesis", net.dir / "node0" / "genesis.json",
    )  # fmt: skip
    assert queried["return"] == 250 and queried["verified"] is True
    failing = quorum(
        "contract", "call", address, "transfer", net.addresses[4], "999999", "--from", net.accounts[5],
        "--node", net.rpc("node0"), "--json", check=False,
    )  # fmt: skip
    assert failing.returncode == 4, failing.stderr
    assert json.loads(failing.stdout)["status"] == "failed"


GUESTBOOK = """\
\"\"\"A contract that is none of the examples: a guest book, one entry per account.\"\"\"

from contracts.lang import Address, Contract, Map, block_height, emit, require, sender, view

MAX_NOTE_BYTES = 64


class Guestbook(Contract):
    entries: int
    notes: Map[int, bytes]
    signed_at: Map[Address, int]

    def __init__(self, greeting: bytes) -> None:
        self._add(greeting)

    def sign(self, note: bytes) -> int:
        require(self.signed_at[sender()] == 0, "you signed already")
        require(len(note) > 0 and len(note) <= MAX_NOTE_BYTES, "a note is 1 to 64 bytes")
        self.signed_at[sender()] = block_height()
        return self._add(note)

    @view
    def count(self) -> int:
        return self.entries

    @view
    def note(self, index: int) -> bytes:
        return self.notes[index]

    def _add(self, note: bytes) -> int:
        index = self.entries
        self.notes[index] = note
        self.entries = index + 1
        emit("Signed", index, sender(), note)
        return index
"""


def test_a_python_contract_deploys_behaves_and_agrees_on_every_node(
    net: Net, tmp_path: Path
) -> None:
    """Issue 17: a contract written in Python (not an example) deploys from its .py file
    through the CLI, a require failure gives a failed receipt with its message and exit 4,
    and every node holds the same state."""
    source = tmp_path / "guestbook.py"
    source.write_text(GUESTBOOK)
    genesis = net.dir / "node0" / "genesis.json"
    deployed = quorum_json(
        "contract", "deploy", source, "--args", b"hello".hex(), "--from", net.accounts[2],
        "--node", net.rpc("node0"), "--genesis", genesis,
    )  # fmt: skip
    assert deployed["status"] == "committed" and deployed["verified"] is True
    address = deployed["address"]
    signed = quorum_json(
        "contract", "call", address, "sign", b"first!".hex(), "--from", net.accounts[3],
        "--node", net.rpc("node1"),
    )  # fmt: skip
    assert signed["status"] == "committed" and signed["return"] == 1
    [event] = signed["events"]
    assert event["name"] == "Signed" and event["args"][1] == net.addresses[3]
    again = quorum(
        "contract", "call", address, "sign", b"twice".hex(), "--from", net.accounts[3],
        "--node", net.rpc("node2"), "--json", check=False,
    )  # fmt: skip
    assert again.returncode == 4, again.stderr
    failed = json.loads(again.stdout)
    assert failed["status"] == "failed" and failed["receipt"]["error"] == "you signed already"
    top = failed["height"]
    wait_until(
        "every node at the failed call's height",
        lambda: net.converged(["node0", "node1", "node2", "node3"], top),
    )
    answers = []
    for name in ("node0", "node1", "node2", "node3"):
        count = quorum_json(
            "contract", "query", address, "count", "--node", net.rpc(name), "--genesis", genesis
        )
        note = quorum_json(
            "contract", "query", address, "note", "1", "--node", net.rpc(name),
            "--genesis", genesis,
        )  # fmt: skip
        assert count["verified"] is True and note["verified"] is True
        answers.append((count["return"], note["return"]))
    assert answers == [(2, b"first!".hex())] * 4


def test_a_graceful_restart_keeps_what_was_waiting(net: Net) -> None:
    """Issue 12: a validator stopped with SIGTERM journals its mempool and re-admits it at
    start (through every check), so a restart does not drop accepted transactions without a
    word. A transaction behind a nonce gap is the one that is still waiting at the stop."""
    key = load_key(net.accounts[5], None)
    with net.client("node3") as c:
        status = c.status()
        nonce = c.account(key.address.hex())["nonce"]
        gapped = Transaction.create(
            key, status["chain_id"], nonce + 3, Transfer(bytes(20), 1), gas_limit=10_000
        )
        [result] = c.submit([gapped])
        assert result["status"] == "pending", result
    quorum("testnet", "stop", "--dir", net.dir, "--only", "node3")
    assert (net.dir / "node3" / "data" / "mempool.journal").exists()
    quorum("testnet", "start", "--dir", net.dir, "--only", "node3")
    with net.client("node3") as c:
        found = wait_until(
            "the journalled transaction is pending again",
            lambda: (t := c.transaction(gapped.hash)) and t["status"] == "pending" and t,
        )
        assert found["nonce"] == nonce + 3
    assert not (net.dir / "node3" / "data" / "mempool.journal").exists()


def test_malformed_http_gets_4xx_from_a_real_node(net: Net) -> None:
    rpc = net.rpc("node0")
    with httpx.Client(base_url=rpc, timeout=10) as http:
        assert http.post("/v1/transactions", content=b"{oops").status_code == 400
        assert (
            http.post("/v1/transactions", json={"txs": ["00ff"]}).json()["results"][0]["status"]
            == "rejected"
        )
        assert http.get("/v1/blocks/not-a-height").status_code == 400
        assert http.get("/v1/accounts/xyz").status_code == 400
        assert http.post("/v1/transactions", content=b"x" * (9 * 1024 * 1024)).status_code == 413
        assert http.get("/metrics").status_code == 200


def test_a_peer_with_an_unknown_key_is_refused(net: Net) -> None:
    genesis = load_genesis(net.dir / "node0" / "genesis.json")
    host, port = net.nodes["node0"]["p2p"].split(":")
    stranger = PrivateKey.generate()
    shake = Handshake(
        Role.INITIATOR,
        stranger,
        genesis.chain_id,
        genesis.hash(),
        [v.public_key for v in genesis.validators],
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(shake.data_to_send())
        sock.settimeout(10)
        received = b""
        refused = False
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    refused = True  # closed on us
                    break
                received += chunk
                try:
                    result = shake.receive_data(chunk)
                except HandshakeError:
                    refused = True
                    break
                out = shake.data_to_send()
                if out:
                    sock.sendall(out)
                assert result is None, "an unknown key completed a handshake"
        except (ConnectionResetError, TimeoutError):
            refused = True
    assert refused


class Loader(threading.Thread):
    """Keeps submitting transfers from one account while faults happen; records commits."""

    def __init__(self, net: Net, account: int, to: int) -> None:
        super().__init__(daemon=True)
        self.net = net
        self.key = load_key(net.accounts[account], None)
        self.to = bytes.fromhex(net.addresses[to])
        self.stop_event = threading.Event()
        self.committed: list[tuple[str, int]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        names = list(self.net.nodes)
        with self.net.client(names[0]) as c:
            status = c.status()
            nonce = c.account(self.key.address)["nonce"]
        turn = 0
        while not self.stop_event.is_set():
            tx = Transaction.create(
                self.key, status["chain_id"], nonce, Transfer(self.to, 1), gas_limit=10_000
            )
            for _ in range(len(names)):
                turn += 1
                try:
                    with QuorumClient(self.net.rpc(names[turn % len(names)]), timeout_s=5) as c:
                        (result,) = c.submit([tx], wait=True, timeout_ms=20_000)
                except ClientError:
                    continue  # that node is down: try the next one with the same transaction
                if result["status"] == "committed":
                    self.committed.append((result["tx_hash"], result["height"]))
                    nonce += 1
                    break
                if result.get("code") == "nonce_too_low":  # an earlier attempt committed after all
                    nonce += 1
                    break
            self.stop_event.wait(0.05)


def test_killed_backup_then_primary_network_continues_and_they_catch_up(net: Net) -> None:
    everyone = ["node0", "node1", "node2", "node3"]
    loader = Loader(net, 3, 0)
    loader.start()
    status = net.status()
    primary = status["node0"]["primary"]
    backup = next(n for n in everyone if n != primary)
    os.kill(net.pid(backup), signal.SIGKILL)
    survivor = next(n for n in everyone if n not in (primary, backup))
    first = transfer(net, 0, 1, 7, survivor)
    assert first["status"] == "committed"
    # Now the primary too: with f = 1 only one may be down, so bring the backup back first.
    quorum("testnet", "start", "--dir", net.dir, "--only", backup)
    wait_until(f"{backup} catches up", lambda: net.converged([backup, survivor], first["height"]))
    os.kill(net.pid(primary), signal.SIGKILL)
    remaining = [n for n in everyone if n != primary]
    second = transfer(net, 1, 2, 9, remaining[0])
    assert second["status"] == "committed"
    third = transfer(net, 2, 3, 11, remaining[1])
    assert third["status"] == "committed"
    new_status = net.status()
    assert new_status[remaining[0]]["primary"] != primary
    quorum("testnet", "start", "--dir", net.dir, "--only", primary)
    wait_until("the old primary catches up", lambda: net.converged(everyone, third["height"]))
    loader.stop_event.set()
    loader.join(timeout=60)
    assert len(loader.committed) >= 3, "transactions kept committing through the faults"
    final = max(h for _, h in loader.committed)
    wait_until("every node has the loader's last block", lambda: net.converged(everyone, final))
    for name in everyone:
        with net.client(name) as c:
            found = c.transaction(third["tx_hash"])
            assert found is not None and found["status"] == "committed"
            for tx_hash, height in loader.committed:  # nothing acknowledged was lost
                seen = c.transaction(tx_hash)
                assert seen is not None and seen["height"] == height, (name, tx_hash)
