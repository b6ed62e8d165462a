"""A wiped validator rejoins a real 4-validator network by state sync (issue 15).

One network with a short checkpoint interval (8 blocks) so snapshots exist after a few
seconds of load; the validator's data folder is deleted, it is restarted, and it must agree
on head hash and state root with the others, having installed a snapshot (its log says so)
and holding no blocks below it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis.document import dump_genesis, load_genesis
from ledger.client import QuorumClient
from tests.integration.netutil import free_base_port, quorum, quorum_json, wait_until

pytestmark = pytest.mark.slow

INTERVAL = 8


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("statesync") / "testnet"
    base = free_base_port(8)
    quorum("testnet", "init", "--validators", "4", "--dir", directory,
           "--base-port", str(base), "--accounts", "4")  # fmt: skip
    genesis_path = directory / "node0" / "genesis.json"
    genesis = load_genesis(genesis_path)
    short = dataclasses.replace(
        genesis,
        consensus=dataclasses.replace(
            genesis.consensus, checkpoint_interval=INTERVAL, watermark_window=2 * INTERVAL
        ),
    )
    for i in range(4):
        dump_genesis(short, directory / f"node{i}" / "genesis.json")
    quorum("testnet", "start", "--dir", directory)
    try:
        yield directory
    finally:
        quorum("testnet", "stop", "--dir", directory, check=False)


def _status(directory: Path) -> dict[str, dict]:
    return {n["name"]: n for n in quorum_json("testnet", "status", "--dir", directory)["nodes"]}


def _rpc(directory: Path, name: str) -> str:
    manifest = json.loads((directory / "testnet.json").read_text())
    return next(n["rpc"] for n in manifest["nodes"] if n["name"] == name)


def test_a_wiped_validator_rejoins_from_a_snapshot(net_dir: Path) -> None:
    quorum("bench", "--dir", net_dir, "--duration", "5", "--json", timeout=300)
    height = _status(net_dir)["node0"]["height"]
    assert height > 3 * INTERVAL, "the load made enough blocks for two snapshots"
    quorum("testnet", "stop", "--dir", net_dir, "--only", "node3")
    shutil.rmtree(net_dir / "node3" / "data")
    log = net_dir / "node3" / "node.log"
    log.write_text("")
    quorum("testnet", "start", "--dir", net_dir, "--only", "node3")

    def agreed() -> bool:
        with (
            QuorumClient(_rpc(net_dir, "node3")) as mine,
            QuorumClient(_rpc(net_dir, "node0")) as theirs,
        ):
            a, b = mine.status(), theirs.status()
        key = ("height", "head_hash", "state_root")
        return a["height"] >= height and all(a[k] == b[k] for k in key) and not a["syncing"]

    wait_until("node3 agrees with node0 after state sync", agreed)
    text = log.read_text()
    assert "installed snapshot" in text, text[-2000:]
    with QuorumClient(_rpc(net_dir, "node3")) as client:
        assert client.status()["syncing"] is False


def test_a_validator_killed_during_its_state_sync_restarts_cleanly(net_dir: Path) -> None:
    """kill -9 the joining validator as soon as it reports a state sync under way (or at
    once, if the sync was quicker than the first look): the snapshot is installed in one
    SQLite transaction, so after the restart it either syncs again from scratch or resumes
    from the installed snapshot — and ends agreeing with the others, never serving a mixed
    state."""
    quorum("bench", "--dir", net_dir, "--duration", "3", "--json", timeout=300)
    quorum("testnet", "stop", "--dir", net_dir, "--only", "node3")
    shutil.rmtree(net_dir / "node3" / "data")
    quorum("testnet", "start", "--dir", net_dir, "--only", "node3")
    pid = _status(net_dir)["node3"]["pid"]
    seen: list[object] = []

    def answers() -> bool:
        with QuorumClient(_rpc(net_dir, "node3")) as client:
            seen.append(client.status()["syncing"])
        return True

    wait_until("node3 answers its status", answers)
    os.kill(pid, signal.SIGKILL)
    wait_until("node3 is gone", lambda: not _alive(pid))
    quorum("testnet", "start", "--dir", net_dir, "--only", "node3")
    height = _status(net_dir)["node0"]["height"]
    wrong: list[int] = []

    def agreed() -> bool:
        with (
            QuorumClient(_rpc(net_dir, "node3")) as mine,
            QuorumClient(_rpc(net_dir, "node0")) as theirs,
        ):
            a, b = mine.status(), theirs.status()
            if a["height"] > 0 and not a["syncing"]:
                # Whatever it serves is the chain's: its head is the others' block there.
                ours, others = mine.block(a["height"]), theirs.block(a["height"])
                if ours is not None and others is not None and ours["hash"] != others["hash"]:
                    wrong.append(a["height"])
        key = ("height", "head_hash", "state_root")
        return a["height"] >= height and all(a[k] == b[k] for k in key) and not a["syncing"]

    wait_until("node3 agrees with node0 after a killed sync", agreed)
    assert seen, "the status was read before the kill"
    assert wrong == [], f"node3 served another chain's head at heights {wrong}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    )
