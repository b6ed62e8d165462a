"""The genesis document: its files on disk, and the one place to import it from.

A genesis file fixes everything a chain starts from: the chain id, the validator set (in
order: the primary of view ``v`` is ``validators[v mod n]``), the consensus parameters,
funded accounts, predeployed contracts and permissions. Every node of a chain must load
the same document; :meth:`Genesis.hash` names it.

Two representations, one meaning:

* the JSON form (:meth:`Genesis.to_json`, :func:`parse_genesis`): what genesis files
  contain; bytes are hex strings, amounts are integers, ``"any"`` means "anyone";
* the canonical value (:meth:`Genesis.to_value`): bytes as bytes, ``None`` for "anyone",
  encoded with :func:`crypto.encoding.encode` and hashed with
  ``tagged_hash("genesis", ...)``. The hash therefore never depends on JSON key order,
  whitespace, hex letter case or ``0x`` prefixes.

Validation collects every problem it can find, each as ``"field.path: what is wrong"``,
and raises one :class:`GenesisError` carrying them all. A :class:`Genesis` (and a
:class:`ConsensusParams`) cannot be constructed in an invalid state.

Where things live (this module re-exports every public name, so
``from genesis.document import Genesis, load_genesis`` keeps working):

* :mod:`genesis.checks`: the limits, :class:`GenesisError` and every field check;
* :mod:`genesis.model`: the frozen dataclasses, their canonical value and hash;
* :mod:`genesis.jsonform`: parsing the JSON form, and genesis JSON text;
* here: :func:`load_genesis` and :func:`dump_genesis`, reading and writing genesis files.

What this module must never do: parse or validate a document itself (it reads bytes,
enforces :data:`MAX_GENESIS_FILE_BYTES` and hands the text to :mod:`genesis.jsonform`);
let an I/O failure escape as anything but a :class:`GenesisError`; or leave a half-written
genesis file behind (writes go to a temp file, are fsynced, then renamed into place).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from genesis.checks import (
    ANY,
    GENESIS_FORMAT_VERSION,
    KIB,
    MAX_ACCOUNTS,
    MAX_CONTRACT_CODE_BYTES,
    MAX_CONTRACTS,
    MAX_GENESIS_FILE_BYTES,
    MAX_INITIAL_HEIGHT,
    MAX_PERMISSION_ENTRIES,
    MAX_STORAGE_ENTRIES,
    MAX_STORAGE_KEY_BYTES,
    MAX_STORAGE_VALUE_BYTES,
    MAX_VALIDATORS,
    MIB,
    MIN_VALIDATORS,
    PARAM_NAMES,
    U64_MAX,
    GenesisError,
    format_genesis_time,
    parse_genesis_time,
)
from genesis.jsonform import genesis_from_json_text, genesis_to_json_text, parse_genesis
from genesis.model import Account, ConsensusParams, Contract, Genesis, Permissions, Validator

__all__ = [
    "ANY",
    "GENESIS_FORMAT_VERSION",
    "KIB",
    "MAX_ACCOUNTS",
    "MAX_CONTRACTS",
    "MAX_CONTRACT_CODE_BYTES",
    "MAX_GENESIS_FILE_BYTES",
    "MAX_INITIAL_HEIGHT",
    "MAX_PERMISSION_ENTRIES",
    "MAX_STORAGE_ENTRIES",
    "MAX_STORAGE_KEY_BYTES",
    "MAX_STORAGE_VALUE_BYTES",
    "MAX_VALIDATORS",
    "MIB",
    "MIN_VALIDATORS",
    "PARAM_NAMES",
    "U64_MAX",
    "Account",
    "ConsensusParams",
    "Contract",
    "Genesis",
    "GenesisError",
    "Permissions",
    "Validator",
    "dump_genesis",
    "format_genesis_time",
    "genesis_from_json_text",
    "genesis_to_json_text",
    "load_genesis",
    "parse_genesis",
    "parse_genesis_time",
]


def load_genesis(path: str | os.PathLike[str]) -> Genesis:
    """Read, parse and validate a genesis file. Every failure is a :class:`GenesisError`."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_GENESIS_FILE_BYTES:
                raise GenesisError(
                    f"{where}: genesis file is {size} bytes, over the limit of "
                    f"{MAX_GENESIS_FILE_BYTES}"
                )
            data = fh.read(MAX_GENESIS_FILE_BYTES + 1)
    except FileNotFoundError:
        raise GenesisError(f"{where}: genesis file not found") from None
    except IsADirectoryError:
        raise GenesisError(f"{where}: is a directory, not a genesis file") from None
    except PermissionError:
        raise GenesisError(f"{where}: cannot read genesis file: permission denied") from None
    except OSError as exc:
        raise GenesisError(f"{where}: cannot read genesis file: {exc.strerror or exc}") from None
    if len(data) > MAX_GENESIS_FILE_BYTES:
        raise GenesisError(
            f"{where}: genesis file is over the limit of {MAX_GENESIS_FILE_BYTES} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GenesisError(
            f"{where}: not valid UTF-8 (byte offset {exc.start}: {exc.reason})"
        ) from None
    return genesis_from_json_text(text)


def dump_genesis(genesis: Genesis, path: str | os.PathLike[str]) -> None:
    """Write ``genesis`` as pretty JSON, atomically (temp file, fsync, ``os.replace``)."""
    target = Path(path)
    text = genesis_to_json_text(genesis)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
