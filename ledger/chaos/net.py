"""A local testnet under the chaos harness: real node processes, relayed links, process faults.

What it is for: :class:`ChaosNet` takes a testnet directory (``quorum testnet init``
layout), rewrites every node's ``config.toml`` so that each peer address is a port of a
:class:`~ledger.chaos.relay.RelayNetwork`, starts the nodes as background processes the
way ``quorum testnet start`` does (same command line, ``DIR/nodeN/node.log``,
``DIR/nodeN/node.pid``), and injects process faults: SIGKILL, SIGSTOP/SIGCONT, SIGTERM and
restart, a second process with the same validator key, a corrupted block store.

House rules: every process it starts is stopped by :meth:`ChaosNet.close` (paused ones are
resumed first), also when the harness fails; waits poll a condition under a deadline, never
a fixed sleep; the original peer addresses are written back on close so ``quorum testnet``
keeps working on the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx

from crypto.keyfile import load_key
from crypto.keys import PrivateKey
from genesis.document import Genesis, load_genesis
from ledger.chaos.relay import RelayNetwork
from ledger.config import (
    CONFIG_FILE_NAME,
    GENESIS_FILE_NAME,
    VALIDATOR_KEY_FILE_NAME,
    HostPort,
    load_config,
)
from ledger.testnet import (
    LOG_FILE_NAME,
    MANIFEST_FILE_NAME,
    PID_FILE_NAME,
    free_port_range,
    init_testnet,
    load_manifest,
    pid_running,
    read_pid,
    serving,
    stop_nodes,
)

T = TypeVar("T")

#: Generous: four nodes, the load generator and the harness share two cores.
START_DEADLINE_S: Final = 90.0
STOP_DEADLINE_S: Final = 20.0
HTTP_TIMEOUT_S: Final = 5.0
POLL_S: Final = 0.2
#: Accounts a testnet made by the harness gets (load senders, a probe, an attacker).
DEFAULT_ACCOUNTS: Final = 8
CHAIN_ID: Final = "quorum-chaos"


class ChaosError(Exception):
    """The harness cannot go on (a node does not start, a deadline passed...)."""


def wait_for(what: str, probe: Callable[[], T | None], deadline_s: float) -> T:
    """Poll ``probe`` until it returns something truthy; raise :class:`ChaosError` after the deadline."""
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        if time.monotonic() >= end:
            raise ChaosError(f"timed out after {deadline_s:.0f} s waiting for {what} ({last})")
        time.sleep(POLL_S)


def peer_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


@dataclass
class NodeHandle:
    """One node process the harness manages (a testnet node or an extra, e.g. a twin)."""

    name: str
    home: Path
    rpc: str
    p2p: str
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class ChaosNet:
    """A testnet directory driven by the harness; use :func:`open_chaos_net`."""

    def __init__(self, directory: Path, *, seed: int | None = None) -> None:
        self.dir = directory
        manifest = json.loads((directory / MANIFEST_FILE_NAME).read_text(encoding="utf-8"))
        self.manifest = manifest
        self.nodes: dict[str, NodeHandle] = {
            e.name: NodeHandle(e.name, e.home, e.rpc, e.p2p) for e in load_manifest(directory)
        }
        self.names: list[str] = list(self.nodes)
        self.genesis: Genesis = load_genesis(directory / self.names[0] / GENESIS_FILE_NAME)
        self.chain_id = self.genesis.chain_id
        self.validator_keys = tuple(v.public_key for v in self.genesis.validators)
        self.account_files = [directory / a["file"] for a in manifest["accounts"]]
        self.account_keys: list[PrivateKey] = [load_key(p, None) for p in self.account_files]
        self.relay = RelayNetwork(
            {n: peer_address(h.p2p) for n, h in self.nodes.items()}, seed=seed
        )
        self.extras: dict[str, NodeHandle] = {}
        self._http = httpx.Client(timeout=HTTP_TIMEOUT_S)
        self._original_configs: dict[Path, str] = {}

    # ------------------------------------------------------------------ setup / teardown

    def setup(self) -> None:
        """Stop whatever runs in the directory, start the relays, rewrite configs, start nodes."""
        stop_nodes(load_manifest(self.dir))
        ports = self.relay.start()
        for name, node in self.nodes.items():
            path = node.home / CONFIG_FILE_NAME
            self._original_configs[path] = path.read_text(encoding="utf-8")
            self._write_relayed_config(node.home, name, ports)
        self.start(*self.names)

    def _write_relayed_config(
        self, home: Path, dialer: str, ports: dict[tuple[str, str], int]
    ) -> None:
        config = load_config(home)
        peers = tuple(
            replace(p, address=HostPort("127.0.0.1", ports[(dialer, p.name)])) for p in config.peers
        )
        (home / CONFIG_FILE_NAME).write_text(
            replace(config, peers=peers).to_toml(), encoding="utf-8"
        )

    def close(self) -> None:
        """Stop every process started (resuming paused ones), the relays; restore configs."""
        handles = [*self.nodes.values(), *self.extras.values()]
        for handle in handles:
            if handle.running() and handle.paused:
                self._signal(handle, signal.SIGCONT)
                handle.paused = False
        for handle in handles:
            if handle.running():
                self._signal(handle, signal.SIGTERM)
        for handle in handles:
            self._reap(handle, STOP_DEADLINE_S)
        for extra in list(self.extras):
            self.remove_extra(extra)
        for node in self.nodes.values():
            (node.home / PID_FILE_NAME).unlink(missing_ok=True)
        self.relay.close()
        for path, text in self._original_configs.items():
            path.write_text(text, encoding="utf-8")
        self._http.close()

    # ------------------------------------------------------------------ processes

    def handle(self, name: str) -> NodeHandle:
        return self.nodes.get(name) or self.extras[name]

    def spawn(self, name: str) -> NodeHandle:
        """Start ``name``'s process (no wait); the pid file is written like `testnet start`."""
        handle = self.handle(name)
        if handle.running():
            return handle
        with open(handle.home / LOG_FILE_NAME, "ab") as log:
            handle.process = subprocess.Popen(
                [sys.executable, "-m", "ledger.cli", "node", "start", "--home", str(handle.home)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        handle.paused = False
        (handle.home / PID_FILE_NAME).write_text(f"{handle.process.pid}\n", encoding="ascii")
        return handle

    def start(self, *names: str, deadline_s: float = START_DEADLINE_S) -> None:
        """Start processes and wait until each serves its API (ChaosError if one exits);
        the whole network started at once also waits for each to link to a quorum."""
        for name in names:
            self.spawn(name)
        linked = set(names) == set(self.names)

        def all_serving() -> bool:
            for name in names:
                handle = self.handle(name)
                if not handle.running():
                    raise ChaosError(
                        f"{name} exited during startup; its log ends:\n{self.log_tail(name)}"
                    )
            return all(self.serving(n, linked=linked) for n in names)

        wait_for(f"{', '.join(names)} to serve", all_serving, deadline_s)

    def wait_exit(self, name: str, deadline_s: float = START_DEADLINE_S) -> int:
        """Wait for ``name``'s process to exit by itself; its exit code."""
        handle = self.handle(name)
        assert handle.process is not None
        try:
            return handle.process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            raise ChaosError(f"{name} did not exit within {deadline_s:.0f} s") from None

    def kill(self, name: str) -> None:
        """SIGKILL (kill -9) and reap."""
        handle = self.handle(name)
        if handle.running():
            self._signal(handle, signal.SIGKILL)
        self._reap(handle, STOP_DEADLINE_S)

    def terminate(self, name: str) -> None:
        """SIGTERM (a clean stop), SIGKILL after the grace period."""
        handle = self.handle(name)
        if handle.running():
            if handle.paused:
                self._signal(handle, signal.SIGCONT)
            self._signal(handle, signal.SIGTERM)
        self._reap(handle, STOP_DEADLINE_S)

    def pause(self, name: str) -> None:
        handle = self.handle(name)
        self._signal(handle, signal.SIGSTOP)
        handle.paused = True

    def resume(self, name: str) -> None:
        handle = self.handle(name)
        if handle.paused:
            self._signal(handle, signal.SIGCONT)
            handle.paused = False

    def _signal(self, handle: NodeHandle, signum: signal.Signals) -> None:
        if handle.process is not None and handle.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(handle.process.pid, signum)

    def _reap(self, handle: NodeHandle, deadline_s: float) -> None:
        process = handle.process
        if process is None:
            return
        try:
            process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
        handle.paused = False

    def running_names(self) -> list[str]:
        return [n for n in self.names if self.nodes[n].running()]

    def live_names(self) -> list[str]:
        """Running and not paused."""
        return [n for n in self.names if self.nodes[n].running() and not self.nodes[n].paused]

    def rss_kb(self, name: str) -> int | None:
        """Resident set size of the node process, from /proc/PID/status."""
        pid = self.handle(name).pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except FileNotFoundError:
            return None
        return None

    def log_tail(self, name: str, size: int = 3000) -> str:
        path = self.handle(name).home / LOG_FILE_NAME
        try:
            return path.read_text(encoding="utf-8", errors="replace")[-size:]
        except FileNotFoundError:
            return ""

    def log_size(self, name: str) -> int:
        try:
            return (self.handle(name).home / LOG_FILE_NAME).stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, name: str, offset: int) -> str:
        with open(self.handle(name).home / LOG_FILE_NAME, "rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    def validator_key(self, name: str) -> PrivateKey:
        home = self.handle(name).home
        config = load_config(home)
        return load_key(config.path(config.validator_key_file), None)

    # ------------------------------------------------------------------ HTTP

    def rpc(self, name: str) -> str:
        return self.handle(name).rpc

    def get(self, name: str, path: str, timeout_s: float = HTTP_TIMEOUT_S) -> httpx.Response:
        return self._http.get(self.rpc(name) + path, timeout=timeout_s)

    def serving(self, name: str, *, linked: bool = False) -> bool:
        """It answers its API (a 503 from /health included; see ledger.testnet.serving)."""
        return serving(self.rpc(name), linked=linked)

    def healthy(self, name: str) -> bool:
        try:
            return self.get(name, "/health", 2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self, name: str, timeout_s: float = HTTP_TIMEOUT_S) -> dict[str, Any] | None:
        """GET /v1/status, or None when the node does not answer."""
        try:
            response = self.get(name, "/v1/status", timeout_s)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        document: dict[str, Any] = response.json()
        return document

    def statuses(self, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        out = {}
        for name in self.live_names() if names is None else names:
            status = self.status(name, 2.0)
            if status is not None:
                out[name] = status
        return out

    def primary(self, names: list[str] | None = None) -> tuple[str, int] | None:
        """(primary name, view) most live nodes agree on, or None."""
        votes: dict[tuple[str, int], int] = {}
        for status in self.statuses(names).values():
            key = (str(status["primary"]), int(status["view"]))
            votes[key] = votes.get(key, 0) + 1
        if not votes:
            return None
        return max(votes.items(), key=lambda kv: (kv[1], kv[0][1]))[0]

    def height(self, name: str) -> int | None:
        status = self.status(name, 2.0)
        return None if status is None else int(status["height"])

    # ------------------------------------------------------------------ block store faults

    def store_path(self, name: str) -> Path:
        # Imported here: the node's runtime (sqlalchemy, the HTTP server) is for the nodes'
        # processes; the harness needs one file name of it, and only for store faults.
        from ledger.node.run import STORE_FILE_NAME

        home = self.handle(name).home
        return load_config(home).path(load_config(home).data_dir) / STORE_FILE_NAME

    def move_data_aside(self, name: str) -> Path:
        """The operator's repair: move the data directory aside (the node must be stopped)."""
        data = self.store_path(name).parent
        aside = data.with_name(f"{data.name}.corrupt-{int(time.time() * 1000)}")
        data.rename(aside)
        return aside

    # ------------------------------------------------------------------ a second process, same key

    def add_twin(self, name: str, twin_name: str, base_port: int) -> NodeHandle:
        """A copy of ``name``'s home (same validator key and chain) on other ports.

        ``name`` must be stopped while its data is copied. The twin dials the same relays.
        """
        source = self.nodes[name]
        home = self.dir / twin_name
        if home.exists():
            shutil.rmtree(home)
        home.mkdir()
        for file_name in (GENESIS_FILE_NAME, VALIDATOR_KEY_FILE_NAME):
            shutil.copy2(source.home / file_name, home / file_name)
        data = load_config(source.home).path(load_config(source.home).data_dir)
        if data.exists():
            shutil.copytree(data, home / "data")
        config = load_config(source.home)
        twin = replace(
            config,
            home=home.resolve(),
            rpc_listen=HostPort("127.0.0.1", base_port + 1),
            p2p_listen=HostPort("127.0.0.1", base_port),
        )
        (home / CONFIG_FILE_NAME).write_text(twin.to_toml(), encoding="utf-8")
        handle = NodeHandle(
            twin_name, home, f"http://127.0.0.1:{base_port + 1}", f"127.0.0.1:{base_port}"
        )
        self.extras[twin_name] = handle
        return handle

    def remove_extra(self, name: str) -> None:
        """Stop an extra process and delete its home (it holds a copy of a validator key)."""
        self.terminate(name)
        handle = self.extras.pop(name, None)
        if handle is not None:
            shutil.rmtree(handle.home, ignore_errors=True)


def create_testnet(
    directory: Path, *, validators: int = 4, accounts: int = DEFAULT_ACCOUNTS
) -> None:
    """Lay out a fresh testnet on free ports in ``directory`` (replacing a testnet there)."""
    base = free_port_range(2 * validators)
    init_testnet(
        directory,
        validators=validators,
        base_port=base,
        accounts=accounts,
        chain_id=CHAIN_ID,
        force=True,
    )


@contextlib.contextmanager
def open_chaos_net(
    directory: Path,
    *,
    create: bool = True,
    validators: int = 4,
    accounts: int = DEFAULT_ACCOUNTS,
    seed: int | None = None,
) -> Iterator[ChaosNet]:
    """A running :class:`ChaosNet` in ``directory``; everything is stopped on exit.

    With ``create`` a fresh testnet is laid out unless the directory already holds one.
    """
    if create and not (directory / MANIFEST_FILE_NAME).exists():
        create_testnet(directory, validators=validators, accounts=accounts)
    net = ChaosNet(directory, seed=seed)
    try:
        net.setup()
        yield net
    finally:
        net.close()


def stray_pids(directory: Path) -> list[int]:
    """Node processes of ``directory`` still alive according to their pid files."""
    out = []
    for entry in load_manifest(directory):
        pid = read_pid(entry)
        if pid_running(pid):
            assert pid is not None
            out.append(pid)
    return out
