"""A wiped validator rejoins a real 4-validator network by state sync (issue 15).

One network with a short checkpoint interval (8 blocks) so snapshots exist after a few
seconds of load; the validator's data folder is deleted, it is restarted, and it must agree
on head hash and state root with the others, having installed a snapshot (its log says so)
and holding no blocks below it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis.document import dump_genesis, load_genesis
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
    while _status(net_dir)["node0"]["height"] <= 3 * INTERVAL:  # two snapshots at least
        quorum("bench", "--dir", net_dir, "--duration", "5", "--json", timeout=300)
    height = _status(net_dir)["node0"]["height"]
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


def test_a_validator_killed_during_its_state_sync_restarts_cleanly(
    net_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 the joining validator truly mid-sync: its chunk staging is slowed (a test
    hook) and the kill waits until ``/v1/status`` shows the fetch under way with some keys
    staged and chunks still to come. The staged rows are invisible — the killed store
    opens at the genesis, no block, no base — and after the restart it syncs again and
    agrees with the others, never having served another chain's head."""
    quorum("bench", "--dir", net_dir, "--duration", "3", "--json", timeout=300)
    quorum("testnet", "stop", "--dir", net_dir, "--only", "node3")
    shutil.rmtree(net_dir / "node3" / "data")
    (net_dir / "node3" / "node.log").write_text("")
    monkeypatch.setenv(CHUNK_DELAY_ENV, "500")
    quorum("testnet", "start", "--dir", net_dir, "--only", "node3")
    monkeypatch.delenv(CHUNK_DELAY_ENV)
    pid = _status(net_dir)["node3"]["pid"]

    kill_mid_state_sync(net_dir / "node3", _rpc(net_dir, "node3"), pid)

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
    assert wrong == [], f"node3 served another chain's head at heights {wrong}"
    log = (net_dir / "node3" / "node.log").read_text()
    assert log.count("state sync: snapshot at block") >= 2, "it synced again after the kill"
