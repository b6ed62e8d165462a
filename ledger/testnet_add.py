"""`quorum testnet add-node`: a new validator home for an existing testnet, started as a
follower (ledger/node/follower.py) until the validators vote it in.

The home is laid out like the others (config.toml whose peers are every node of the
manifest, a copy of the genesis, an unencrypted validator key); its ports are the next two
free ones after the highest port of the manifest; the manifest gains the node. The vote
is the validators' to cast: :func:`propose_command` is what each of q of them runs.

Never: vote, or change any other node's home.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from crypto.keyfile import KeyFileError, read_public_info, save_key
from crypto.keys import PrivateKey
from ledger.config import (
    CONFIG_FILE_NAME,
    GENESIS_FILE_NAME,
    VALIDATOR_KEY_FILE_NAME,
    HostPort,
    NodeConfig,
    PeerConfig,
)
from ledger.testnet import LOCALHOST, MANIFEST_FILE_NAME, NodeEntry, TestnetError, load_manifest

#: How far past the manifest's highest port to look for two free consecutive ports.
PORT_SEARCH: Final = 200


@dataclass(frozen=True, slots=True)
class AddedNode:
    entry: NodeEntry
    public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.entry.name,
            "home": str(self.entry.home),
            "public_key": self.public_key.hex(),
            "p2p": self.entry.p2p,
            "rpc": self.entry.rpc,
        }


def _port_of(text: str) -> int:
    return int(text.rsplit(":", 1)[1])


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def _next_ports(nodes: list[NodeEntry]) -> tuple[int, int]:
    highest = max(max(_port_of(n.p2p), _port_of(n.rpc)) for n in nodes)
    for port in range(highest + 1, min(highest + PORT_SEARCH, 65535)):
        if _free(port) and _free(port + 1):
            return port, port + 1
    raise TestnetError(f"no two free consecutive ports after {highest} on {LOCALHOST}")


def _next_name(nodes: list[NodeEntry], directory: Path) -> str:
    taken = {n.name for n in nodes}
    i = len(nodes)
    while f"node{i}" in taken or (directory / f"node{i}").exists():
        i += 1
    return f"node{i}"


def add_node(directory: Path) -> AddedNode:
    """Lay out the next validator home of the testnet in ``directory``; see the docstring."""
    nodes = load_manifest(directory)
    if not nodes:
        raise TestnetError(f"the testnet in {directory} has no nodes")
    name = _next_name(nodes, directory)
    p2p_port, rpc_port = _next_ports(nodes)
    peers = []
    for node in nodes:
        try:
            public_key = read_public_info(node.home / VALIDATOR_KEY_FILE_NAME).public_key
        except (OSError, ValueError, KeyFileError) as exc:
            raise TestnetError(f"cannot read {node.name}'s validator key: {exc}") from None
        peers.append(PeerConfig(node.name, HostPort.parse(node.p2p, "p2p"), public_key))
    key = PrivateKey.generate()
    home = directory / name
    home.mkdir()
    config = NodeConfig(
        home=home.resolve(),
        name=name,
        rpc_listen=HostPort(LOCALHOST, rpc_port),
        p2p_listen=HostPort(LOCALHOST, p2p_port),
        peers=tuple(peers),
    )
    (home / CONFIG_FILE_NAME).write_text(config.to_toml(), encoding="utf-8")
    shutil.copyfile(nodes[0].home / GENESIS_FILE_NAME, home / GENESIS_FILE_NAME)
    save_key(home / VALIDATOR_KEY_FILE_NAME, key, None)
    manifest_path = directory / MANIFEST_FILE_NAME
    doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    entry = NodeEntry(name, home, f"http://{config.rpc_listen}", str(config.p2p_listen))
    doc["nodes"].append(
        {
            "name": name,
            "home": name,
            "rpc": entry.rpc,
            "p2p": entry.p2p,
            "validator_address": key.address.hex(),
        }
    )
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    return AddedNode(entry, key.public_key)


def propose_command(added: AddedNode, voter: NodeEntry) -> str:
    """The vote one current validator (``voter``) casts to add ``added``."""
    return (
        f"quorum validators propose add --name {added.entry.name} --pubkey "
        f"{added.public_key.hex()} --p2p {added.entry.p2p} --key "
        f"{voter.home / VALIDATOR_KEY_FILE_NAME} --node {voter.rpc} --wait"
    )
