"""Adding a validator on a live network, through the CLI (docs/OPERATIONS.md).

Four validators, checkpoints every 4 blocks (so snapshots every 4 blocks, and state sync
is worth it more than 4 blocks behind). The chain first grows past three checkpoints;
`quorum testnet add-node` lays out node4 and starts it as a follower; three of the four
vote it in (q = 3 of 4). Once the first vote committed the validators accept its links and
it joins by state sync (a certified snapshot, then the blocks after it: it never holds
block 1); at the next checkpoint block E the set switches, node4 starts its replica, and
blocks after E carry node4's commit signature (q = 4 of 5, so some certificate names it);
every node, node4 included, agrees on the head; the light client verifies a read after the
switch against the genesis alone. node4's first sync is slowed (a test hook) and killed -9
mid-fetch: its store reopens at the genesis (the staged chunks are invisible) and, started
again, it syncs again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crypto.hashing import sha256
from crypto.keyfile import load_key
from ledger.chain.types import Transaction, Transfer
from ledger.client import QuorumClient
from ledger.node.statesync import CHUNK_DELAY_ENV
from tests.integration.netutil import (
    free_base_port,
    kill_mid_state_sync,
    quorum,
    quorum_json,
    wait_until,
)

pytestmark = pytest.mark.slow

CHECKPOINT_INTERVAL = 4
NAMES = ["node0", "node1", "node2", "node3", "node4"]


def test_a_validator_is_added_by_vote_and_signs_after_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "testnet"
    quorum(
        "testnet", "init", "--validators", "4", "--dir", directory,
        "--base-port", str(free_base_port(8)), "--accounts", "2",
        "--checkpoint-interval", str(CHECKPOINT_INTERVAL),
    )  # fmt: skip
    manifest = json.loads((directory / "testnet.json").read_text())
    acct0 = directory / manifest["accounts"][0]["file"]
    to = manifest["accounts"][1]["address"]
    genesis = directory / "node0" / "genesis.json"

    def transfer(rpc: str) -> dict[str, Any]:
        return quorum_json(
            "tx", "transfer", "--from", acct0, "--to", to, "--amount", "1", "--node", rpc
        )  # fmt: skip

    quorum("testnet", "start", "--dir", directory)
    try:
        _grow(rpc_of(directory, "node0"), acct0, 3 * CHECKPOINT_INTERVAL)
        monkeypatch.setenv(CHUNK_DELAY_ENV, "400")  # node4's first sync: slow, to be killed
        added = quorum_json("testnet", "add-node", "--dir", directory)
        monkeypatch.delenv(CHUNK_DELAY_ENV)
        assert added["name"] == "node4" and len(added["propose_commands"]) == 4
        rpc = {n["name"]: n["rpc"] for n in quorum_json("testnet", "status", "--dir", directory)[
            "nodes"
        ]}  # fmt: skip
        assert rpc["node4"] == added["rpc"]
        with QuorumClient(added["rpc"], timeout_s=10) as c:
            assert c.status()["syncing"]["mode"] == "follower"

        for voter in ("node0", "node1", "node2"):
            doc = quorum_json(
                "validators", "propose", "add", "--name", "node4", "--pubkey",
                added["public_key"], "--p2p", added["p2p"], "--key",
                directory / voter / "validator_key.json", "--node", rpc[voter], "--wait",
            )  # fmt: skip
            assert doc["status"] == "committed", doc
            if voter == "node0":  # the validators now accept node4's links: it syncs
                _kill_mid_sync(directory, added["rpc"], added["pid"])
                quorum("testnet", "start", "--dir", directory, "--only", "node4")
        assert doc["vote"]["state"] == "scheduled"
        switch = -(-doc["height"] // CHECKPOINT_INTERVAL) * CHECKPOINT_INTERVAL
        while transfer(rpc["node0"])["height"] < switch + 1:
            pass
        log = directory / "node4" / "node.log"
        wait_until("node4 to run its replica", lambda: "starting its replica" in log.read_text())
        text = log.read_text()
        assert text.count("state sync: snapshot at block") >= 2, "it synced again after the kill"
        assert "state sync: installed snapshot" in text, text[-3000:]
        with QuorumClient(rpc["node4"], timeout_s=10) as c:
            base = c.status()["base_height"]
            assert base is not None and base >= 2 * CHECKPOINT_INTERVAL, "joined by a snapshot"
            assert c.block(1) is None, "node4 did not replay from block 1"
        listing = quorum_json("validators", "list", "--node", rpc["node1"])
        assert listing["epoch"] == 1 and listing["start_height"] == switch
        assert [v["name"] for v in listing["validators"]] == NAMES

        def signed_by_node4() -> dict[str, Any] | None:
            paid = transfer(rpc["node4"])  # submitted to the new member itself
            block = quorum_json(
                "query", "block", str(paid["height"]), "--node", rpc["node2"],
                "--genesis", genesis,
            )  # fmt: skip
            signers = {v["validator"] for v in block["certificate"]["votes"]}
            return block if block["verified"] is True and 4 in signers else None

        block = wait_until("a certificate signed by node4", signed_by_node4)
        assert block["height"] > switch

        def heads() -> set[tuple[int, str]]:
            out = set()
            for name in NAMES:
                with QuorumClient(rpc[name], timeout_s=10) as c:
                    status = c.status()
                    out.add((status["height"], status["head_hash"]))
            return out

        top = transfer(rpc["node3"])["height"]
        wait_until(
            "every node, node4 included, at the same head",
            lambda: len(agreed := heads()) == 1 and next(iter(agreed))[0] >= top,
        )
    finally:
        quorum("testnet", "stop", "--dir", directory, check=False)


def rpc_of(directory: Path, name: str) -> str:
    manifest = json.loads((directory / "testnet.json").read_text())
    return str(next(n["rpc"] for n in manifest["nodes"] if n["name"] == name))


def _grow(rpc: str, key_file: Path, height: int) -> None:
    """Commit one transfer at a time (a block each, each to a new account, so the state has
    keys in many chunks) until the chain reaches ``height``."""
    key = load_key(key_file, None)
    with QuorumClient(rpc, timeout_s=30) as c:
        chain_id = c.status()["chain_id"]
        nonce = c.account(key.address)["nonce"]
        while c.status()["height"] < height:
            to = sha256(f"new account {nonce}".encode())[:20]
            tx = Transaction.create(key, chain_id, nonce, Transfer(to, 1), gas_limit=10_000)
            (result,) = c.submit([tx], wait=True, timeout_ms=20_000)
            assert result["status"] == "committed", result
            nonce += 1


def _kill_mid_sync(directory: Path, rpc: str, pid: int) -> None:
    """kill -9 node4 mid-way through its state sync (as a follower, from a snapshot two
    checkpoints up); its store must open at the genesis, no block, no base."""
    seen = kill_mid_state_sync(directory / "node4", rpc, pid)
    assert seen["mode"] == "follower" and seen["snapshot_height"] >= 2 * CHECKPOINT_INTERVAL
