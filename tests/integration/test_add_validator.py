"""Adding a validator on a live network, through the CLI (docs/OPERATIONS.md).

Four validators, checkpoints every 4 blocks. `quorum testnet add-node` lays out node4 and
starts it as a follower (it links to the validators and replays their certified blocks);
three of the four vote it in (q = 3 of 4); at the next checkpoint block E the set switches,
node4 starts its replica, and blocks after E carry node4's commit signature (q = 4 of 5,
so some certificate names it); every node, node4 included, agrees on the head; the light
client verifies a read after the switch against the genesis alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.client import QuorumClient
from tests.integration.netutil import free_base_port, quorum, quorum_json, wait_until

pytestmark = pytest.mark.slow

CHECKPOINT_INTERVAL = 4
NAMES = ["node0", "node1", "node2", "node3", "node4"]


def test_a_validator_is_added_by_vote_and_signs_after_the_switch(tmp_path: Path) -> None:
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
        added = quorum_json("testnet", "add-node", "--dir", directory)
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
        assert doc["vote"]["state"] == "scheduled"
        switch = -(-doc["height"] // CHECKPOINT_INTERVAL) * CHECKPOINT_INTERVAL
        while transfer(rpc["node0"])["height"] < switch + 1:
            pass
        wait_until(
            "node4 to run its replica",
            lambda: "starting its replica" in (directory / "node4" / "node.log").read_text(),
        )
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
