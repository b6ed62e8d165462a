"""Helpers for multi-process tests: free ports, the real `quorum` CLI, waiting on conditions."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

from genesis.document import load_genesis
from ledger.chain.store import Store
from ledger.client import QuorumClient
from ledger.node.run import STORE_FILE_NAME
from ledger.testnet import free_port_range

T = TypeVar("T")

#: Generous: 4 nodes share 2 cores with the test itself.
DEADLINE_S = 90.0


def free_base_port(count: int) -> int:
    """A base port P such that P .. P+count-1 are free on 127.0.0.1 (below the kernel's
    ephemeral range); the testnet library's search, shared with the chaos harness."""
    return free_port_range(count)


def quorum(
    *args: str | Path,
    check: bool = True,
    timeout: float = 180.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (``env``: its whole environment)."""
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"quorum {' '.join(map(str, args))} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
    return done


def quorum_json(*args: str | Path, check: bool = True) -> Any:
    done = quorum(*args, "--json", check=check)
    return json.loads(done.stdout)


def wait_until(what: str, probe: Callable[[], T | None], deadline_s: float = DEADLINE_S) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after the deadline."""
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # the node may be restarting
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def alive(pid: int) -> bool:
    """The process runs (not gone, not a zombie waiting for its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    )


def kill_mid_state_sync(home: Path, rpc: str, pid: int) -> dict[str, Any]:
    """kill -9 the node at ``home`` while its status shows its state sync fetching, some keys
    staged and chunks still to come; then its store holds the staged rows and no block, and
    opens at the genesis, intact. Returns the status's ``syncing`` seen just before."""

    def mid_sync() -> dict[str, Any] | None:
        with QuorumClient(rpc, timeout_s=10) as client:
            syncing = client.status()["syncing"]
        if not isinstance(syncing, dict) or syncing.get("phase") != "fetching":
            return None
        progress = syncing["progress"]
        if progress["keys_staged"] > 0 and progress["chunks_done"] < progress["chunks_total"]:
            return dict(syncing)
        return None

    seen = wait_until(f"{home.name} mid-way through its state sync", mid_sync)
    os.kill(pid, signal.SIGKILL)
    wait_until(f"{home.name} is gone", lambda: not alive(pid))
    # Half a sync is on disk, staged, and none of it is the node's state.
    path = home / "data" / STORE_FILE_NAME
    with closing(sqlite3.connect(path)) as db:
        staged = db.execute("SELECT count(*) FROM sync_state").fetchone()[0]
        blocks = db.execute("SELECT count(*) FROM blocks").fetchone()[0]
    assert staged > 0 and blocks == 0, (staged, blocks, seen)
    with Store.open(path, load_genesis(home / "genesis.json")) as store:
        assert store.head_height == 0 and store.base_height is None
        assert store.state_root == store.genesis_state_root
        store.check_integrity()
    return seen
