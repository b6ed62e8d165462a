"""Local testnets: lay out N validator homes, funded accounts and a manifest in one directory.

Layout (DESIGN section 6)::

    DIR/testnet.json            manifest: nodes (name, home, rpc, p2p) and accounts
    DIR/node0/config.toml       node config; peers are the other validators
    DIR/node0/genesis.json      the same genesis in every home
    DIR/node0/validator_key.json  the validator key: signs consensus messages and
                                authenticates peer links (unencrypted, mode 0600)
    DIR/accounts/acct0.json     funded account keys (unencrypted, mode 0600)

Keys are unencrypted so that a testnet starts unattended; production validators use
encrypted keys (docs/OPERATIONS.md). Also here: starting and stopping the nodes of a
testnet as background processes, and a search for free ports (the chaos harness and the
multi-process tests lay out their testnets on them).

Never: import the CLI or a harness; `quorum testnet`, `quorum bench`, `quorum chaos` and
the tests all build on this module.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from crypto.keyfile import save_key
from crypto.keys import PrivateKey
from genesis.builder import build_genesis
from genesis.document import ConsensusParams, Genesis, Permissions, dump_genesis
from ledger.config import (
    CONFIG_FILE_NAME,
    GENESIS_FILE_NAME,
    VALIDATOR_KEY_FILE_NAME,
    HostPort,
    NodeConfig,
    PeerConfig,
)

MANIFEST_FILE_NAME: Final = "testnet.json"
ACCOUNTS_DIR_NAME: Final = "accounts"
DEFAULT_TESTNET_DIR: Final = "testnet"
DEFAULT_BASE_PORT: Final = 26600
DEFAULT_CHAIN_ID: Final = "quorum-testnet"
DEFAULT_ACCOUNT_BALANCE: Final = 1_000_000_000_000
MAX_TESTNET_VALIDATORS: Final = 64
MAX_TESTNET_ACCOUNTS: Final = 10_000
LOCALHOST: Final = "127.0.0.1"


class TestnetError(Exception):
    """A testnet directory problem a person must fix."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True, slots=True)
class TestnetLayout:
    """What `testnet init` made; also the manifest's content."""

    directory: Path
    genesis: Genesis
    nodes: tuple[NodeConfig, ...]
    validator_addresses: tuple[bytes, ...]
    accounts: tuple[tuple[Path, bytes], ...]

    __test__ = False

    def manifest(self) -> dict[str, Any]:
        return {
            "format": "quorum-testnet",
            "version": 1,
            "chain_id": self.genesis.chain_id,
            "genesis_hash": self.genesis.hash().hex(),
            "nodes": [
                {
                    "name": node.name,
                    "home": node.home.name,
                    "rpc": f"http://{node.rpc_listen}",
                    "p2p": str(node.p2p_listen),
                    "validator_address": addr.hex(),
                }
                for node, addr in zip(self.nodes, self.validator_addresses, strict=True)
            ],
            "accounts": [
                {"file": f"{ACCOUNTS_DIR_NAME}/{path.name}", "address": address.hex()}
                for path, address in self.accounts
            ],
        }


def node_ports(base_port: int, index: int) -> tuple[int, int]:
    """(p2p, rpc) ports of node ``index``: two consecutive ports per node from the base."""
    return base_port + 2 * index, base_port + 2 * index + 1


#: Ports searched by :func:`free_port_range`: below the kernel's ephemeral range, so a
#: port found free is not taken by an outgoing connection a moment later.
FREE_PORT_LOW: Final = 20_000
FREE_PORT_HIGH: Final = 32_000
FREE_PORT_ATTEMPTS: Final = 500


def free_port_range(count: int) -> int:
    """A base port P such that P .. P+count-1 are free on 127.0.0.1 right now."""
    rng = random.Random()
    for _ in range(FREE_PORT_ATTEMPTS):
        base = rng.randrange(FREE_PORT_LOW, FREE_PORT_HIGH - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind((LOCALHOST, port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise TestnetError(f"no {count} consecutive free ports found on {LOCALHOST}")


def _prepare_directory(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise TestnetError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if not force:
            raise TestnetError(
                f"{directory} is not empty (use --force to replace the testnet in it)"
            )
        if not (directory / MANIFEST_FILE_NAME).exists():
            raise TestnetError(
                f"{directory} is not empty and holds no {MANIFEST_FILE_NAME}: refusing to delete "
                "something that is not a testnet, even with --force"
            )
        for child in directory.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    directory.mkdir(parents=True, exist_ok=True)


def _permissions(accounts: list[PrivateKey], admins: int, threshold: int) -> Permissions:
    """A permissioned testnet's genesis roles: every account submits and deploys, the
    first ``admins`` administer."""
    listed = tuple(key.address for key in accounts)
    return Permissions(
        submit=listed, deploy=listed, admin=listed[:admins], admin_threshold=threshold
    )


def init_testnet(
    directory: Path,
    *,
    validators: int,
    base_port: int = DEFAULT_BASE_PORT,
    accounts: int = 4,
    balance: int = DEFAULT_ACCOUNT_BALANCE,
    chain_id: str = DEFAULT_CHAIN_ID,
    genesis_time: str | None = None,
    force: bool = False,
    permissioned: bool = False,
    admins: int = 1,
    admin_threshold: int = 1,
    checkpoint_interval: int = 64,
) -> TestnetLayout:
    """Create a testnet layout in ``directory``; see the module docstring.

    ``permissioned``: only the testnet accounts may submit and deploy, and acct0 ..
    acct{admins-1} administer roles, ``admin_threshold`` of them per change."""
    if not 1 <= validators <= MAX_TESTNET_VALIDATORS:
        raise TestnetError(f"--validators must be between 1 and {MAX_TESTNET_VALIDATORS}")
    if not 0 <= accounts <= MAX_TESTNET_ACCOUNTS:
        raise TestnetError(f"--accounts must be between 0 and {MAX_TESTNET_ACCOUNTS}")
    last_port = node_ports(base_port, validators - 1)[1]
    if base_port < 1024 or last_port > 65535:
        raise TestnetError(
            f"ports {base_port}..{last_port} do not fit in 1024..65535: choose another --base-port"
        )
    if permissioned and not 1 <= admins <= accounts:
        raise TestnetError(
            f"--admins must be between 1 and --accounts ({accounts}): the admins are acct0.."
        )
    if permissioned and not 1 <= admin_threshold <= admins:
        raise TestnetError(
            f"--admin-threshold must be between 1 and --admins ({admins}): a change needs "
            "that many admins' votes"
        )
    _prepare_directory(directory, force)

    validator_keys = [PrivateKey.generate() for _ in range(validators)]
    account_keys = [PrivateKey.generate() for _ in range(accounts)]
    names = [f"node{i}" for i in range(validators)]
    g = build_genesis(
        chain_id,
        [(name, key.public_key) for name, key in zip(names, validator_keys, strict=True)],
        [(key.address, balance) for key in account_keys],
        genesis_time=genesis_time,
        permissions=_permissions(account_keys, admins, admin_threshold) if permissioned else None,
        consensus=ConsensusParams(
            checkpoint_interval=checkpoint_interval, watermark_window=4 * checkpoint_interval
        ),
    )

    addresses = [HostPort(LOCALHOST, node_ports(base_port, i)[0]) for i in range(validators)]
    peers = [
        PeerConfig(names[i], addresses[i], validator_keys[i].public_key) for i in range(validators)
    ]
    nodes = []
    for i, name in enumerate(names):
        home = directory / name
        home.mkdir()
        p2p_port, rpc_port = node_ports(base_port, i)
        config = NodeConfig(
            home=home.resolve(),
            name=name,
            rpc_listen=HostPort(LOCALHOST, rpc_port),
            p2p_listen=HostPort(LOCALHOST, p2p_port),
            peers=tuple(p for j, p in enumerate(peers) if j != i),
        )
        (home / CONFIG_FILE_NAME).write_text(config.to_toml(), encoding="utf-8")
        dump_genesis(g, home / GENESIS_FILE_NAME)
        save_key(home / VALIDATOR_KEY_FILE_NAME, validator_keys[i], None)
        nodes.append(config)

    accounts_dir = directory / ACCOUNTS_DIR_NAME
    accounts_dir.mkdir()
    account_files = []
    for i, key in enumerate(account_keys):
        path = accounts_dir / f"acct{i}.json"
        save_key(path, key, None)
        account_files.append((path, key.address))

    layout = TestnetLayout(
        directory=directory,
        genesis=g,
        nodes=tuple(nodes),
        validator_addresses=tuple(k.address for k in validator_keys),
        accounts=tuple(account_files),
    )
    manifest_path = directory / MANIFEST_FILE_NAME
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(layout.manifest(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    return layout


# ----------------------------------------------------------------------------- processes

PID_FILE_NAME: Final = "node.pid"
LOG_FILE_NAME: Final = "node.log"
#: How long `testnet start` waits for every node to serve (see :func:`serving`).
START_TIMEOUT_S: Final = 90.0
#: How long `testnet stop` waits after SIGTERM before SIGKILL.
STOP_TIMEOUT_S: Final = 20.0


@dataclass(frozen=True, slots=True)
class NodeEntry:
    name: str
    home: Path
    rpc: str
    p2p: str

    __test__ = False


def load_manifest(directory: Path) -> list[NodeEntry]:
    """The nodes of the testnet in ``directory`` (raises TestnetError when there is none)."""
    path = directory / MANIFEST_FILE_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return [
            NodeEntry(n["name"], directory / n["home"], n["rpc"], n["p2p"]) for n in doc["nodes"]
        ]
    except FileNotFoundError:
        raise TestnetError(
            f"no testnet in {directory} (run `quorum testnet init --dir {directory}`)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TestnetError(f"{path} is damaged: {exc}") from None


def select_nodes(nodes: list[NodeEntry], only: str | None) -> list[NodeEntry]:
    if only is None:
        return nodes
    chosen = [n for n in nodes if n.name == only]
    if not chosen:
        raise TestnetError(f"no node named {only!r} (have: {', '.join(n.name for n in nodes)})")
    return chosen


def read_pid(node: NodeEntry) -> int | None:
    try:
        text = (node.home / PID_FILE_NAME).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def pid_running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:  # reap it if it is our own exited child
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def serving(rpc: str, *, linked: bool = False) -> bool:
    """The node at ``rpc`` serves its API; with ``linked``, it is also linked to a quorum of
    validators. ``/health`` answers 200 when the node makes progress; a 503 listing its
    problems still means it serves (a lone node, one catching up)."""
    import httpx

    try:
        response = httpx.get(f"{rpc}/health", timeout=2.0)
    except httpx.HTTPError:
        return False
    if response.status_code == 200:
        return True
    try:
        problems = {p["code"] for p in response.json()["problems"]}
    except (ValueError, KeyError, TypeError):
        return False
    return "starting" not in problems and not (linked and "no_quorum_of_peers" in problems)


def start_nodes(
    nodes: list[NodeEntry],
    *,
    timeout_s: float = START_TIMEOUT_S,
    linked: bool = False,
    log_format: str | None = None,
) -> list[tuple[NodeEntry, int]]:
    """Start each node as a background process; return when all serve their API (with
    ``linked``: and each is linked to a quorum of validators, for a whole testnet started
    at once). ``log_format`` (text, json) overrides the nodes' configs."""
    import subprocess
    import sys
    import time

    started = []
    for node in nodes:
        pid = read_pid(node)
        if pid_running(pid):
            assert pid is not None
            started.append((node, pid))
            continue
        log = open(node.home / LOG_FILE_NAME, "ab")  # noqa: SIM115 - handed to the child
        command = [sys.executable, "-m", "ledger.cli", "node", "start", "--home", str(node.home)]
        if log_format is not None:
            command += ["--log-format", log_format]
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        (node.home / PID_FILE_NAME).write_text(f"{process.pid}\n", encoding="ascii")
        started.append((node, process.pid))
    deadline = time.monotonic() + timeout_s
    waiting = list(started)
    while waiting:
        waiting = [(n, p) for n, p in waiting if not serving(n.rpc, linked=linked)]
        for node, pid in waiting:
            if not pid_running(pid):
                tail = (node.home / LOG_FILE_NAME).read_text(encoding="utf-8", errors="replace")[
                    -2000:
                ]
                raise TestnetError(f"{node.name} exited during startup; its log ends:\n{tail}")
        if waiting and time.monotonic() > deadline:
            raise TestnetError(
                f"{', '.join(n.name for n, _ in waiting)} did not "
                f"{'link to a quorum of validators' if linked else 'serve'} in {timeout_s:.0f} s"
            )
        if waiting:
            time.sleep(0.2)
    return started


def stop_nodes(
    nodes: list[NodeEntry], *, timeout_s: float = STOP_TIMEOUT_S
) -> list[tuple[NodeEntry, int | None, bool]]:
    """SIGTERM each running node, wait, SIGKILL stragglers. Returns (node, pid, was_running)."""
    import signal
    import time

    report = []
    for node in nodes:
        pid = read_pid(node)
        running = pid_running(pid)
        if running and pid is not None:
            os.kill(pid, signal.SIGTERM)
        report.append((node, pid, running))
    deadline = time.monotonic() + timeout_s
    for node, pid, running in report:
        while running and pid_running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if running and pid is not None and pid_running(pid):
            os.kill(pid, signal.SIGKILL)
            while pid_running(pid):
                time.sleep(0.05)
        (node.home / PID_FILE_NAME).unlink(missing_ok=True)
    return report
