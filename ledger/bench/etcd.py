"""The CFT yardstick: a 3-member etcd cluster's `etcdctl check perf` on this machine.

`quorum bench --compare-etcd` runs this just before its own load, so both figures come
from one run on one machine (issue 18): etcd (Debian's ``etcd-server``/``etcd-client``, a
Raft store in Go with no signatures) is started as three local members on free ports in a
temporary folder, `etcdctl check perf --load=<load>` writes to it for its fixed period
(60 s), and the members are stopped and their folder removed. Where etcd is not installed
the comparison is skipped with a note saying how to install it; nothing else changes.

Never: leave an etcd process or data folder behind, or report a figure etcd did not print.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.testnet import free_port_range

#: `etcdctl check perf` loads (its own names); "xl" is the one issue 18 compares against.
LOADS = ("s", "m", "l", "xl")
INSTALL_HINT = "apt-get install etcd-server etcd-client"
_THROUGHPUT = re.compile(r"Throughput (?:is|too low:)\s*(\d+)\s*writes/s")
#: How long the members may take to elect a leader and answer (4 nodes may share the cores).
_READY_S = 60.0
#: `check perf` runs 60 s; allow for a slow start and the final compaction.
_CHECK_TIMEOUT_S = 300.0


class EtcdError(Exception):
    """The etcd comparison could not run (a member did not start, or check perf failed)."""


@dataclass(frozen=True, slots=True)
class EtcdResult:
    writes_per_s: int
    load: str
    members: int
    version: str
    output: str

    def to_json(self) -> dict[str, Any]:
        return {
            "writes_per_s": self.writes_per_s,
            "load": self.load,
            "members": self.members,
            "version": self.version,
        }


def binaries() -> tuple[str, str] | None:
    """The paths of ``etcd`` and ``etcdctl``, or None when either is missing."""
    server, client = shutil.which("etcd"), shutil.which("etcdctl")
    if server is None or client is None:
        return None
    return server, client


def parse_throughput(output: str) -> int:
    """The writes/s that `etcdctl check perf` printed (PASS or FAIL line alike)."""
    found = _THROUGHPUT.search(output)
    if found is None:
        raise EtcdError(f"etcdctl check perf printed no throughput:\n{output.strip()[-800:]}")
    return int(found.group(1))


def _version(server: str) -> str:
    done = subprocess.run([server, "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].removeprefix("etcd Version: ").strip() if first else "unknown"


def run_check_perf(
    *, load: str = "xl", members: int = 3, note: Callable[[str], None] = lambda _: None
) -> EtcdResult:
    """Start ``members`` local etcd members, run `check perf --load=load`, stop them."""
    found = binaries()
    if found is None:
        raise EtcdError(f"etcd is not installed ({INSTALL_HINT})")
    if load not in LOADS:
        raise EtcdError(f"unknown etcd load {load!r} (one of {', '.join(LOADS)})")
    server, client = found
    base = free_port_range(2 * members)
    ports = list(range(base, base + 2 * members))
    names = [f"m{i}" for i in range(members)]
    peer_urls = [f"http://127.0.0.1:{ports[2 * i]}" for i in range(members)]
    client_urls = [f"http://127.0.0.1:{ports[2 * i + 1]}" for i in range(members)]
    cluster = ",".join(f"{n}={u}" for n, u in zip(names, peer_urls, strict=True))
    env = {**os.environ, "ETCDCTL_API": "3"}
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="quorum-etcd-")))
        procs: list[subprocess.Popen[bytes]] = []
        stack.callback(_stop, procs)
        for i, name in enumerate(names):
            log = stack.enter_context((root / f"{name}.log").open("wb"))
            procs.append(
                subprocess.Popen(
                    [
                        server,
                        f"--name={name}",
                        f"--data-dir={root / name}",
                        f"--listen-peer-urls={peer_urls[i]}",
                        f"--initial-advertise-peer-urls={peer_urls[i]}",
                        f"--listen-client-urls={client_urls[i]}",
                        f"--advertise-client-urls={client_urls[i]}",
                        f"--initial-cluster={cluster}",
                        "--initial-cluster-state=new",
                        "--initial-cluster-token=quorum-bench",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        endpoints = ",".join(client_urls)
        _wait_healthy(client, endpoints, env, procs, root)
        note(f"etcd: {members} members up; etcdctl check perf --load={load} (60 s)")
        done = subprocess.run(
            [client, f"--endpoints={endpoints}", "check", "perf", f"--load={load}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=_CHECK_TIMEOUT_S,
            check=False,
        )
        output = done.stdout + done.stderr
        return EtcdResult(parse_throughput(output), load, members, _version(server), output)


def _wait_healthy(
    client: str,
    endpoints: str,
    env: dict[str, str],
    procs: list[subprocess.Popen[bytes]],
    root: Path,
) -> None:
    deadline = time.monotonic() + _READY_S
    while True:
        for proc in procs:
            if proc.poll() is not None:
                logs = "\n".join(p.read_text(errors="replace")[-400:] for p in root.glob("*.log"))
                raise EtcdError(f"an etcd member exited with code {proc.returncode}:\n{logs}")
        done = subprocess.run(
            [client, f"--endpoints={endpoints}", "endpoint", "health"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise EtcdError(f"etcd did not become healthy in {_READY_S:g} s: {done.stderr.strip()}")
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
