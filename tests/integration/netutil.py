"""Helpers for multi-process tests: free ports, the real `quorum` CLI, waiting on conditions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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
