"""Local testnets: lay out N validator homes, funded accounts and a manifest in one directory.

Layout (DESIGN section 6)::

    DIR/testnet.json            manifest: nodes (name, home, rpc, p2p) and accounts
    DIR/node0/config.toml       node config; peers are the other validators
    DIR/node0/genesis.json      the same genesis in every home
    DIR/node0/validator_key.json  the validator key: signs consensus messages and
                                authenticates peer links (unencrypted, mode 0600)
    DIR/accounts/acct0.json     funded account keys (unencrypted, mode 0600)

Keys are unencrypted so that a testnet starts unattended; production validators use
encrypted keys (docs/OPERATIONS.md).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from crypto.keyfile import save_key
from crypto.keys import PrivateKey
from genesis.builder import build_genesis
from genesis.document import Genesis, dump_genesis
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
) -> TestnetLayout:
    """Create a testnet layout in ``directory``; see the module docstring."""
    if not 1 <= validators <= MAX_TESTNET_VALIDATORS:
        raise TestnetError(f"--validators must be between 1 and {MAX_TESTNET_VALIDATORS}")
    if not 0 <= accounts <= MAX_TESTNET_ACCOUNTS:
        raise TestnetError(f"--accounts must be between 0 and {MAX_TESTNET_ACCOUNTS}")
    last_port = node_ports(base_port, validators - 1)[1]
    if base_port < 1024 or last_port > 65535:
        raise TestnetError(
            f"ports {base_port}..{last_port} do not fit in 1024..65535: choose another --base-port"
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
