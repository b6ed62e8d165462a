"""A node's config.toml: where its keys, genesis and data live, what it listens on, its peers.

Loading validates everything and raises :class:`ConfigError` with the field and the
problem; paths in the file are relative to the node's home directory.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import tomli_w

from crypto.hashing import from_hex
from crypto.keys import PUBLIC_KEY_SIZE

CONFIG_FILE_NAME: Final = "config.toml"
GENESIS_FILE_NAME: Final = "genesis.json"
VALIDATOR_KEY_FILE_NAME: Final = "validator_key.json"
DATA_DIR_NAME: Final = "data"
MAX_CONFIG_BYTES: Final = 1024 * 1024


class ConfigError(ValueError):
    """A config file a person must fix; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, name: str) -> HostPort:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ConfigError(f"{name}: expected host:port, got {text!r}")
        port = int(port_text)
        if not 0 < port < 65536:
            raise ConfigError(f"{name}: port {port} is outside 1..65535")
        return cls(host, port)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    name: str
    address: HostPort
    validator_public_key: bytes


@dataclass(frozen=True, slots=True)
class NodeConfig:
    home: Path
    name: str
    rpc_listen: HostPort
    p2p_listen: HostPort
    peers: tuple[PeerConfig, ...] = ()
    genesis_file: str = GENESIS_FILE_NAME
    validator_key_file: str = VALIDATOR_KEY_FILE_NAME
    data_dir: str = DATA_DIR_NAME
    mempool_max_txs: int = 50_000
    mempool_max_bytes: int = 64 * 1024 * 1024
    log_level: str = "info"
    #: ``text`` for people, ``json`` for log shippers (ledger/node/logs.py).
    log_format: str = "text"
    #: Join from a certified snapshot when far behind (false: always replay blocks).
    state_sync: bool = True

    def path(self, relative: str) -> Path:
        return (self.home / relative).resolve()

    def to_toml(self) -> str:
        doc: dict[str, Any] = {
            "node": {
                "name": self.name,
                "genesis_file": self.genesis_file,
                "validator_key_file": self.validator_key_file,
                "data_dir": self.data_dir,
                "log_level": self.log_level,
                "log_format": self.log_format,
            },
            "rpc": {"listen": str(self.rpc_listen)},
            "p2p": {
                "listen": str(self.p2p_listen),
                "peers": [
                    {
                        "name": p.name,
                        "address": str(p.address),
                        "validator_public_key": p.validator_public_key.hex(),
                    }
                    for p in self.peers
                ],
            },
            "mempool": {"max_txs": self.mempool_max_txs, "max_bytes": self.mempool_max_bytes},
            "sync": {"state_sync": self.state_sync},
        }
        return tomli_w.dumps(doc)


_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
_LOG_FORMATS: Final = ("text", "json")


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _reject_unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown field {key!r} (known: {', '.join(allowed)})")


def _str(table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: expected a non-empty string")
    return value


def _int(table: dict[str, Any], key: str, where: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}.{key}: expected a positive integer")
    return value


def load_config(home: Path) -> NodeConfig:
    """Read and validate ``home/config.toml``."""
    path = home / CONFIG_FILE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no config file (run `quorum node init` or `quorum testnet init`)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    where = str(path)
    _reject_unknown(doc, ("node", "rpc", "p2p", "mempool", "sync"), where)
    sync = _table(doc, "sync", where)
    _reject_unknown(sync, ("state_sync",), f"{where} [sync]")
    state_sync = sync.get("state_sync", True)
    if not isinstance(state_sync, bool):
        raise ConfigError(f"{where}: sync.state_sync must be true or false")
    node = _table(doc, "node", where)
    _reject_unknown(
        node,
        ("name", "genesis_file", "validator_key_file", "data_dir", "log_level", "log_format"),
        f"{where} [node]",
    )
    rpc = _table(doc, "rpc", where)
    _reject_unknown(rpc, ("listen",), f"{where} [rpc]")
    p2p = _table(doc, "p2p", where)
    _reject_unknown(p2p, ("listen", "peers"), f"{where} [p2p]")
    mempool = _table(doc, "mempool", where)
    _reject_unknown(mempool, ("max_txs", "max_bytes"), f"{where} [mempool]")
    log_level = _str(node, "log_level", "node", "info")
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"{where}: node.log_level must be one of {', '.join(_LOG_LEVELS)}")
    log_format = _str(node, "log_format", "node", "text")
    if log_format not in _LOG_FORMATS:
        raise ConfigError(f"{where}: node.log_format must be one of {', '.join(_LOG_FORMATS)}")
    peers_raw = p2p.get("peers", [])
    if not isinstance(peers_raw, list):
        raise ConfigError(f"{where}: p2p.peers must be an array of tables")
    peers = []
    for i, peer in enumerate(peers_raw):
        pw = f"p2p.peers[{i}]"
        if not isinstance(peer, dict):
            raise ConfigError(f"{where}: {pw} must be a table")
        _reject_unknown(peer, ("name", "address", "validator_public_key"), f"{where} {pw}")
        try:
            vkey = from_hex(
                _str(peer, "validator_public_key", pw),
                size=PUBLIC_KEY_SIZE,
                name=f"{pw}.validator_public_key",
            )
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        peers.append(
            PeerConfig(
                _str(peer, "name", pw),
                HostPort.parse(_str(peer, "address", pw), f"{pw}.address"),
                vkey,
            )
        )
    try:
        return NodeConfig(
            home=home.resolve(),
            name=_str(node, "name", "node"),
            rpc_listen=HostPort.parse(_str(rpc, "listen", "rpc"), "rpc.listen"),
            p2p_listen=HostPort.parse(_str(p2p, "listen", "p2p"), "p2p.listen"),
            peers=tuple(peers),
            genesis_file=_str(node, "genesis_file", "node", GENESIS_FILE_NAME),
            validator_key_file=_str(node, "validator_key_file", "node", VALIDATOR_KEY_FILE_NAME),
            data_dir=_str(node, "data_dir", "node", DATA_DIR_NAME),
            mempool_max_txs=_int(mempool, "max_txs", "mempool", 50_000),
            mempool_max_bytes=_int(mempool, "max_bytes", "mempool", 64 * 1024 * 1024),
            log_level=log_level,
            log_format=log_format,
            state_sync=state_sync,
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
