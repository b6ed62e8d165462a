"""How long a wiped validator takes to agree again: state sync against full replay.

A program that prints figures (docs/PERFORMANCE.md, "Rejoining"): it creates a fresh
4-validator testnet, puts ``quorum bench`` load on it, then — with the load stopped — wipes
one validator's data folder and restarts it, once replaying every block (``[sync]
state_sync = false``) and once with state sync, timing from the start command until its
head hash and state root equal the others'. Then more load, and the same again, so both
history lengths are measured in one run::

    python -m ledger.bench.rejoin --dir /tmp/rejoin --load 60 --load 120

Never: run against a testnet you care about (it is created with --force and wiped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ledger.client import QuorumClient
from ledger.config import load_config
from ledger.testnet import free_port_range

NODE = "node3"
OTHERS = ("node0", "node1", "node2")
AGREE_DEADLINE_S = 600.0


def _quorum(*args: str | Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _status(rpc: str) -> dict[str, Any] | None:
    try:
        with QuorumClient(rpc, timeout_s=2.0) as client:
            return client.status()
    except Exception:
        return None


def _rpcs(directory: Path) -> dict[str, str]:
    manifest = json.loads((directory / "testnet.json").read_text())
    return {n["name"]: n["rpc"] for n in manifest["nodes"]}


def rejoin(directory: Path, *, state_sync: bool) -> dict[str, Any]:
    """Wipe NODE, restart it, and time until it agrees with the others."""
    rpcs = _rpcs(directory)
    home = directory / NODE
    _quorum("testnet", "stop", "--dir", directory, "--only", NODE)
    config = load_config(home)
    shutil.rmtree(config.path(config.data_dir), ignore_errors=True)
    (home / "config.toml").write_text(dataclasses.replace(config, state_sync=state_sync).to_toml())
    reference = _status(rpcs[OTHERS[0]])
    assert reference is not None, "the other validators must be running"
    started = time.monotonic()
    _quorum("testnet", "start", "--dir", directory, "--only", NODE)
    healthy_s = time.monotonic() - started
    while time.monotonic() - started < AGREE_DEADLINE_S:
        mine = _status(rpcs[NODE])
        theirs = _status(rpcs[OTHERS[0]])
        if (
            mine is not None
            and theirs is not None
            and mine["height"] >= reference["height"]
            and (mine["height"], mine["head_hash"], mine["state_root"])
            == (theirs["height"], theirs["head_hash"], theirs["state_root"])
        ):
            return {
                "mode": "state_sync" if state_sync else "replay",
                "height": mine["height"],
                "agreed_s": round(time.monotonic() - started, 2),
                "healthy_s": round(healthy_s, 2),
            }
        time.sleep(0.05)
    raise SystemExit(f"{NODE} did not agree within {AGREE_DEADLINE_S:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--load", type=float, action="append", required=True,
                        help="seconds of bench load before each measurement (repeat)")  # fmt: skip
    args = parser.parse_args()
    directory: Path = args.dir
    base = free_port_range(8)
    _quorum("testnet", "init", "--validators", "4", "--dir", directory, "--base-port", str(base),
            "--accounts", "4", "--force")  # fmt: skip
    _quorum("testnet", "start", "--dir", directory)
    results = []
    total_load = 0.0
    try:
        for load_s in args.load:
            bench = json.loads(
                _quorum("bench", "--dir", directory, "--duration", str(load_s), "--json")
            )
            total_load += load_s
            status = _status(_rpcs(directory)[OTHERS[0]]) or {}
            row: dict[str, Any] = {
                "load_s": total_load,
                "blocks": status.get("height"),
                "bench_committed": bench.get("committed"),
                "bench_tx_per_s": bench.get("tx_per_s"),
            }
            row["replay"] = rejoin(directory, state_sync=False)
            row["state_sync"] = rejoin(directory, state_sync=True)
            print(json.dumps(row), flush=True)
            results.append(row)
    finally:
        _quorum("testnet", "stop", "--dir", directory)
    if len(results) > 1:
        first, last = results[0]["state_sync"]["agreed_s"], results[-1]["state_sync"]["agreed_s"]
        print(json.dumps({"state_sync_ratio_last_to_first": round(last / first, 2)}))


if __name__ == "__main__":
    main()
