"""Validator-set changes on a live network, through the CLI (docs/CONSENSUS.md §12).

Five validators, checkpoints every 4 blocks. With node3 stopped, the four others vote
node4 out (q = 4 of 5); the set switches at the next checkpoint block E: node4 stops
itself (it is no longer a member), the chain goes on with node0..node2 (the new q = 3 of
4), node3 restarts in the old epoch and catches up across the switch, a node restarted
after the switch resumes in the new epoch, the light client verifies reads after the
switch by the chain of sets, and every node agrees throughout. A vote signed
by an account key is refused; so is the vote that would complete an addition (the node
cannot carry an added member through the switch yet: docs/OPERATIONS.md).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from genesis.document import load_genesis
from ledger.chain.validators import ValidatorSet
from ledger.client import QuorumClient
from ledger.light import LightClient, VerificationError
from tests.integration.netutil import free_base_port, quorum, quorum_json, wait_until

pytestmark = pytest.mark.slow

CHECKPOINT_INTERVAL = 4


def check_chain_of_sets_tampering(genesis_file: Path, node: str, address: str) -> None:
    """A proof after the switch carries the chain of sets; without it, or with the proven
    set altered, or with the link's certificate swapped, it does not verify."""
    with QuorumClient(node, timeout_s=10) as c:
        doc = c.account(address, proof=True)
    genesis = load_genesis(genesis_file)
    proof = doc["proof"]
    assert len(proof["epochs"]) == 1
    LightClient(genesis).verify_head(proof)
    dropped = {k: v for k, v in proof.items() if k != "epochs"}
    with pytest.raises(VerificationError, match="commit certificate"):
        LightClient(genesis).verify_head(dropped)
    link = proof["epochs"][0]
    other = ValidatorSet.decode(bytes.fromhex(link["set"]))
    forged_set = replace(other, members=other.members[:3]).encode().hex()
    forged = {**proof, "epochs": [{**link, "set": forged_set}]}
    with pytest.raises(VerificationError, match="not proven"):
        LightClient(genesis).verify_head(forged)
    forged = {**proof, "epochs": [{**link, "certificate": proof["certificate"]}]}
    with pytest.raises(VerificationError, match="chain of validator sets"):
        LightClient(genesis).verify_head(forged)


def test_a_member_is_removed_by_vote_and_the_chain_goes_on(tmp_path: Path) -> None:
    directory = tmp_path / "testnet"
    quorum(
        "testnet", "init", "--validators", "5", "--dir", directory,
        "--base-port", str(free_base_port(10)), "--accounts", "2",
        "--checkpoint-interval", str(CHECKPOINT_INTERVAL),
    )  # fmt: skip
    manifest = json.loads((directory / "testnet.json").read_text())
    rpc = {n["name"]: str(n["rpc"]) for n in manifest["nodes"]}
    acct0 = directory / manifest["accounts"][0]["file"]
    to = manifest["accounts"][1]["address"]

    def key(name: str) -> Path:
        return directory / name / "validator_key.json"

    def vote(*args: str, by: Path, node: str = "node0") -> Any:
        done = quorum(
            "validators", "propose", *args, "--key", by, "--node", rpc[node], "--json",
            check=False,
        )  # fmt: skip
        return done.returncode, json.loads(done.stdout)

    def transfer(node: str) -> dict[str, Any]:
        return quorum_json(
            "tx", "transfer", "--from", acct0, "--to", to, "--amount", "1", "--node", rpc[node]
        )  # fmt: skip

    def heads(names: list[str]) -> dict[str, tuple[int, str]]:
        out = {}
        for name in names:
            with QuorumClient(rpc[name], timeout_s=10) as c:
                status = c.status()
                out[name] = (status["height"], status["head_hash"])
        return out

    def agree(names: list[str], at_least: int) -> bool:
        values = set(heads(names).values())
        return len(values) == 1 and next(iter(values))[0] >= at_least

    quorum("testnet", "start", "--dir", directory)
    try:
        code, refused = vote("remove", "--name", "node4", by=acct0)
        assert code == 3 and refused["code"] == "not_permitted"
        assert "not a current validator" in refused["error"]

        quorum("testnet", "stop", "--dir", directory, "--only", "node3")
        for voter in ("node0", "node1", "node2", "node4"):
            code, doc = vote("remove", "--name", "node4", "--wait", by=key(voter))
            assert code == 0 and doc["status"] == "committed", doc
        assert doc["vote"]["state"] == "scheduled"
        scheduled_at = doc["height"]
        switch = -(-scheduled_at // CHECKPOINT_INTERVAL) * CHECKPOINT_INTERVAL
        while transfer("node0")["height"] < switch + 2:
            pass
        wait_until(
            "node4 to stop itself after the switch",
            lambda: (
                not {
                    n["name"]: n
                    for n in quorum_json("testnet", "status", "--dir", directory)["nodes"]
                }["node4"]["running"]
            ),
        )
        assert "no longer takes part in consensus" in (directory / "node4" / "node.log").read_text()
        listing = quorum_json("validators", "list", "--node", rpc["node1"])
        assert listing["epoch"] == 1 and listing["start_height"] == switch
        assert [v["name"] for v in listing["validators"]] == ["node0", "node1", "node2", "node3"]

        # The light client follows the chain of sets: reads after the switch verify
        # against the genesis alone (certificates of the new set, under its epoch's domain).
        genesis = directory / "node0" / "genesis.json"
        paid = transfer("node1")
        assert paid["height"] > switch
        verified = [
            quorum_json("query", "account", to, "--node", rpc["node2"], "--genesis", genesis),
            quorum_json(
                "tx", "status", paid["tx_hash"], "--node", rpc["node0"], "--genesis", genesis
            ),
            quorum_json(
                "query", "block", str(paid["height"]), "--node", rpc["node1"], "--genesis", genesis
            ),
        ]
        assert all(doc["verified"] is True for doc in verified), verified
        check_chain_of_sets_tampering(genesis, rpc["node0"], to)

        # node3 missed the switch: it restarts in epoch 0 and catches up across it; the
        # new set's q = 3 keeps the chain going meanwhile.
        quorum("testnet", "start", "--dir", directory, "--only", "node3")
        top = transfer("node2")["height"]
        wait_until(
            "node0..node3 at the same head",
            lambda: agree(["node0", "node1", "node2", "node3"], top),
        )

        # A node restarted after the switch resumes in the new epoch from its store.
        quorum("testnet", "stop", "--dir", directory, "--only", "node1")
        quorum("testnet", "start", "--dir", directory, "--only", "node1")
        top = transfer("node1")["height"]
        wait_until(
            "the chain to go on, every node agreeing",
            lambda: agree(["node0", "node1", "node2", "node3"], top),
        )

        # A node that lost its data after the switch joins by state sync: the snapshot it
        # installs is certified by the new set, which it learns from the chain of sets its
        # peers send with their offers (docs/PROTOCOL.md §10), and it then runs epoch 1.
        while transfer("node0")["height"] < switch + 3 * CHECKPOINT_INTERVAL:
            pass
        quorum("testnet", "stop", "--dir", directory, "--only", "node2")
        shutil.rmtree(directory / "node2" / "data")
        log = directory / "node2" / "node.log"
        log.write_text("")
        quorum("testnet", "start", "--dir", directory, "--only", "node2")
        top = transfer("node3")["height"]
        wait_until(
            "node2 back by state sync, every node agreeing",
            lambda: agree(["node0", "node1", "node2", "node3"], top),
        )
        installed = re.search(
            r"installed snapshot (\d+) \(\d+ keys, 1 epoch links\)", log.read_text()
        )
        assert installed is not None and int(installed.group(1)) > switch, log.read_text()[-3000:]
        top = transfer("node2")["height"]  # and it takes part: its API admits, the set commits
        wait_until("the chain to go on", lambda: agree(["node0", "node1", "node2", "node3"], top))

    finally:
        quorum("testnet", "stop", "--dir", directory, check=False)
