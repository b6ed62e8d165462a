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
import datetime
import json
import re
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


def _bench(directory: Path, load_s: float) -> dict[str, Any]:
    """Run ``quorum bench``; its document even when it exits non-zero (a loaded machine may
    make it miss a criterion: the rejoin measurement still stands, the row says so)."""
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "bench", "--dir", str(directory),
         "--duration", str(load_s), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    try:
        document: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise SystemExit(
            f"quorum bench failed ({done.returncode}):\n{done.stderr[-2000:]}"
        ) from None
    document["exit_code"] = done.returncode
    return document


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _log_events(text: str, started_wall: float) -> dict[str, Any]:
    """What node3's log says about this rejoin: the snapshot installed (if any) and when,
    and the replay runs, in seconds since its start command."""
    events: dict[str, Any] = {"replay_runs": 0}
    for line in text.splitlines():
        match = _LOG_TIME.match(line)
        if match is None:
            continue
        at = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        since = round(at - started_wall, 2)
        if (found := re.search(r"installed snapshot (\d+)", line)) is not None:
            events["snapshot_height"] = int(found.group(1))
            events["installed_s"] = since
        elif "blocks behind" in line and "behind_s" not in events:
            events["behind_s"] = since
        elif "replayed blocks" in line:
            events["replay_runs"] += 1
            events["last_replay_s"] = since
    return events


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
    log = home / "node.log"
    log_offset = log.stat().st_size if log.exists() else 0
    started_wall = time.time()
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
            agreed_s = time.monotonic() - started
            with open(log, encoding="utf-8", errors="replace") as handle:
                handle.seek(log_offset)
                events = _log_events(handle.read(), started_wall)
            row = {
                "mode": "state_sync" if state_sync else "replay",
                "height": mine["height"],
                "agreed_s": round(agreed_s, 2),
                "healthy_s": round(healthy_s, 2),
                **events,
            }
            # Blocks executed (all, or those after the snapshot) per second of replaying:
            # from the install (state sync) or the start command (replay) to agreement.
            first = events.get("snapshot_height", 0)
            began = events.get("installed_s", 0.0)
            row["replayed_blocks"] = mine["height"] - first
            row["replay_blocks_per_s"] = round((mine["height"] - first) / (agreed_s - began), 1)
            return row
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
            bench = _bench(directory, load_s)
            total_load += load_s
            status = _status(_rpcs(directory)[OTHERS[0]]) or {}
            row: dict[str, Any] = {
                "load_s": total_load,
                "blocks": status.get("height"),
                "bench_committed": bench.get("committed"),
                "bench_tx_per_s": bench.get("tx_per_s"),
                "bench_exit_code": bench["exit_code"],
                "bench_lost": bench.get("lost"),
                "bench_failed": bench.get("failed"),
                "bench_agree": bench.get("agree"),
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
