"""Contract storage: sload, sstore, sdelete.

Vectors: tests/vectors/vm/storage.json. Each contract has its own key/value storage in the
journaled :class:`~contracts.state.WorldState`; an absent key reads as empty bytes and
storing empty bytes deletes. Keys are at most ``MAX_STORAGE_KEY_BYTES`` long.

Must never: write in a read-only call, or write before the write's gas is charged.
"""

from __future__ import annotations

from typing import Final

from contracts.abi import StackValue
from contracts.frame import Body, ExceptionalHalt, Frame
from contracts.gas import (
    GAS_PER_BYTE_STORAGE,
    GAS_STORAGE_DELETE,
    GAS_STORAGE_READ,
    GAS_STORAGE_WRITE,
    charge,
)
from contracts.instructions.operands import not_bytes, require_writable
from contracts.limits import MAX_BYTES_LENGTH, MAX_STORAGE_KEY_BYTES
from contracts.opcodes import Op


def sload(frame: Frame, _: None) -> None:
    # stack
    k = frame.stack.pop()
    # gas
    charge(frame, GAS_STORAGE_READ)
    # operation
    value = frame.env.world.storage(frame.address, _key(k, "sload"))
    if len(value) > MAX_BYTES_LENGTH:
        raise ExceptionalHalt(f"sload: stored value of {len(value)} bytes is over the limit")
    frame.stack.append(value)


def sstore(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    v = stack.pop()
    k = stack.pop()
    # gas: the base, then per byte of key and value (a refused write is charged no bytes)
    charge(frame, GAS_STORAGE_WRITE)
    if type(v) is not bytes:
        raise not_bytes("sstore value")
    key = _key(k, "sstore")
    require_writable(frame, "sstore")
    charge(frame, GAS_PER_BYTE_STORAGE * (len(key) + len(v)))
    # operation
    frame.env.world.set_storage(frame.address, key, v)


def sdelete(frame: Frame, _: None) -> None:
    # stack
    k = frame.stack.pop()
    # gas
    charge(frame, GAS_STORAGE_DELETE)
    # operation
    key = _key(k, "sdelete")
    require_writable(frame, "sdelete")
    frame.env.world.set_storage(frame.address, key, b"")


def _key(value: StackValue, mnemonic: str) -> bytes:
    if type(value) is not bytes:
        raise not_bytes(f"{mnemonic} key")
    if len(value) > MAX_STORAGE_KEY_BYTES:
        raise ExceptionalHalt(
            f"{mnemonic} key of {len(value)} bytes is over {MAX_STORAGE_KEY_BYTES}"
        )
    return value


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.SLOAD: sload,
    Op.SSTORE: sstore,
    Op.SDELETE: sdelete,
}
