"""Validator-set changes on a live network, through the CLI (docs/CONSENSUS.md §12).

Five validators, checkpoints every 4 blocks. With node3 stopped, the four others vote
node4 out (q = 4 of 5); the set switches at the next checkpoint block E. node4, still
running, *retires* (ledger/node/retire.py): its status says so, it refuses transactions
(503, ``not_a_validator``) while reads still work, and once the new set (node0..node2 of
node0..node3, q = 3 of 4) certifies block E+1 it exits by itself with status 0 and the
retired message. The chain goes on; node3 restarts in the old epoch and catches up across
the switch, a node restarted after the switch resumes in the new epoch, one that lost its
data joins by state sync, the light client verifies reads after the switch by the chain of
sets, and every node agrees throughout. A vote signed by an account key is refused.
(Adding a validator: tests/integration/test_add_validator.py.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from genesis.document import load_genesis
from ledger.chain.validators import ValidatorSet
from ledger.client import QuorumClient
from ledger.light import LightClient, VerificationError
from ledger.testnet import LOG_FILE_NAME, PID_FILE_NAME, serving
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


def start_own(home: Path) -> subprocess.Popen[bytes]:
    """``quorum node start`` as this test's child (so its exit status is seen here), logging
    and recording its pid where `quorum testnet` does (`testnet stop` still stops it)."""
    with open(home / LOG_FILE_NAME, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "node", "start", "--home", str(home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (home / PID_FILE_NAME).write_text(f"{process.pid}\n", encoding="ascii")
    return process


def test_a_member_is_removed_by_vote_retires_and_the_chain_goes_on(tmp_path: Path) -> None:
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

    def status(name: str) -> dict[str, Any]:
        with QuorumClient(rpc[name], timeout_s=10) as c:
            return c.status()

    quorum("testnet", "start", "--dir", directory)
    node4: subprocess.Popen[bytes] | None = None
    try:
        code, refused = vote("remove", "--name", "node4", by=acct0)
        assert code == 3 and refused["code"] == "not_permitted"
        assert "not a current validator" in refused["error"]

        # node4 runs as this test's child from here, so its exit status can be checked.
        quorum("testnet", "stop", "--dir", directory, "--only", "node4")
        node4 = start_own(directory / "node4")
        wait_until("node4 to serve, linked", lambda: serving(rpc["node4"], linked=True))
        quorum("testnet", "stop", "--dir", directory, "--only", "node3")
        for voter in ("node0", "node1", "node2", "node4"):
            code, doc = vote("remove", "--name", "node4", "--wait", by=key(voter))
            assert code == 0 and doc["status"] == "committed", doc
        assert doc["vote"]["state"] == "scheduled"
        scheduled_at = height = doc["height"]
        switch = -(-scheduled_at // CHECKPOINT_INTERVAL) * CHECKPOINT_INTERVAL
        while height < switch:  # one block per transfer: up to the switch block E, no further
            height = transfer("node0")["height"]

        # node4 committed E with the old set and is not in the new one: it retires. Until
        # the new set certifies E+1 (nothing to propose yet) it serves, and says so.
        retiring = wait_until(
            "node4 to say it retires",
            lambda: (v := status("node4")["validator"])["state"] == "retiring" and v,
        )
        assert retiring["removed_at"] == switch and status("node4")["height"] == switch
        with QuorumClient(rpc["node4"], timeout_s=10) as c:
            health = c.health()
        assert "retiring" in {p["code"] for p in health["problems"]}
        refused_here = quorum(
            "tx", "transfer", "--from", acct0, "--to", to, "--amount", "1",
            "--node", rpc["node4"], "--json", check=False,
        )  # fmt: skip
        assert refused_here.returncode == 5, refused_here
        assert json.loads(refused_here.stdout)["code_name"] == "not_a_validator"
        assert node4.poll() is None  # still serving its blocks

        # The new set certifies E+1: node4 fetches it, checks its certificate with the new
        # set, and exits cleanly.
        assert transfer("node1")["height"] > switch
        assert node4.wait(timeout=60) == 0
        log4 = (directory / "node4" / LOG_FILE_NAME).read_text()
        assert (
            f"removed from the validator set at block {switch}; retired after block "
            f"{switch + 1} was certified by the new set" in log4
        ), log4[-3000:]
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
        if node4 is not None and node4.poll() is None:
            node4.kill()
            node4.wait()
