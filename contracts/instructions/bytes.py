"""Byte strings: len, concat, slice, itob, btoi, sha256.

Vectors: tests/vectors/vm/bytes.json. A byte string is at most ``MAX_BYTES_LENGTH`` long.
Every body that makes a new byte string pays per byte it makes (sha256 per byte it reads),
so memory is bounded by gas as well as by the length limit.

Must never: build a byte string before its per-byte gas is charged.
"""

from __future__ import annotations

from typing import Final

from contracts.frame import Body, ExceptionalHalt, Frame
from contracts.gas import (
    GAS_HASH,
    GAS_LOW,
    GAS_MID,
    GAS_PER_BYTE_COPY,
    GAS_PER_BYTE_HASH,
    GAS_VERY_LOW,
    charge,
)
from contracts.instructions.operands import as_bytes, as_u64, not_bytes, not_u64
from contracts.limits import MAX_BYTES_LENGTH, U64_BYTES
from contracts.opcodes import Op
from crypto.hashing import sha256 as sha256_digest


def len_(frame: Frame, _: None) -> None:
    # stack
    b = frame.stack.pop()
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    if type(b) is not bytes:
        raise not_bytes("len operand")
    frame.stack.append(len(b))


def concat(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    b = stack.pop()
    a = stack.pop()
    # gas: the base, then per byte of the result (the operands must be bytes to size it)
    charge(frame, GAS_MID)
    if type(b) is not bytes or type(a) is not bytes:
        raise not_bytes("concat operand")
    size = len(a) + len(b)
    if size > MAX_BYTES_LENGTH:
        raise ExceptionalHalt(f"concat result of {size} bytes is over {MAX_BYTES_LENGTH}")
    charge(frame, GAS_PER_BYTE_COPY * size)
    # operation
    stack.append(a + b)


def slice_(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    j = stack.pop()
    i = stack.pop()
    b = stack.pop()
    # gas: the base, then per byte of the result (the bounds must hold to size it)
    charge(frame, GAS_MID)
    end = as_u64(j, "slice end")
    start = as_u64(i, "slice start")
    data = as_bytes(b, "slice operand")
    if not start <= end <= len(data):
        raise ExceptionalHalt(f"slice [{start}:{end}] of {len(data)} bytes is out of bounds")
    charge(frame, GAS_PER_BYTE_COPY * (end - start))
    # operation
    stack.append(data[start:end])


def itob(frame: Frame, _: None) -> None:
    # stack
    n = frame.stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(n) is not int:
        raise not_u64("itob operand")
    frame.stack.append(n.to_bytes(U64_BYTES, "big"))


def btoi(frame: Frame, _: None) -> None:
    # stack
    b = frame.stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(b) is not bytes:
        raise not_bytes("btoi operand")
    if len(b) > U64_BYTES:
        raise ExceptionalHalt(f"btoi of {len(b)} bytes (at most {U64_BYTES})")
    frame.stack.append(int.from_bytes(b, "big"))


def sha256(frame: Frame, _: None) -> None:
    # stack
    b = frame.stack.pop()
    # gas: the base, then per byte hashed
    charge(frame, GAS_HASH)
    data = as_bytes(b, "sha256 operand")
    charge(frame, GAS_PER_BYTE_HASH * len(data))
    # operation
    frame.stack.append(sha256_digest(data))


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.LEN: len_,
    Op.CONCAT: concat,
    Op.SLICE: slice_,
    Op.ITOB: itob,
    Op.BTOI: btoi,
    Op.SHA256: sha256,
}
