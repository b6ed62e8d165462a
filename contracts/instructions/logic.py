"""Comparisons, logic and bits: lt gt le ge eq ne, not and or, band bor bxor bnot, shl shr.

Vectors: tests/vectors/vm/logic.json. Comparisons and logic leave 1 for true and 0 for
false; logic reads 0 as false and anything else as true. ``eq`` and ``ne`` compare two u64
values or two byte strings; everything else takes u64 values. ``shl`` drops the bits
shifted past 64 by definition; a shift by 64 or more halts.

Must never: leave a value outside the u64 range.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Final

from contracts.frame import Body, ExceptionalHalt, Frame
from contracts.gas import GAS_LOW, charge
from contracts.instructions.operands import not_u64, not_u64_pair
from contracts.limits import U64_MAX
from contracts.opcodes import Op

_U64_BITS: Final = 64


def _u64_binary(mnemonic: str, fn: Callable[[int, int], int]) -> Body:
    """The body of ``mnemonic``: ``fn`` of two u64 values, which cannot leave the range."""

    def body(frame: Frame, _: None) -> None:
        # stack
        stack = frame.stack
        b = stack.pop()
        a = stack.pop()
        # gas
        charge(frame, GAS_LOW)
        # operation
        if type(a) is not int or type(b) is not int:
            raise not_u64_pair(mnemonic)
        stack.append(int(fn(a, b)))

    return body


def _equality(mnemonic: str, want_equal: bool) -> Body:
    """The body of ``eq`` (``want_equal``) or ``ne``."""

    def body(frame: Frame, _: None) -> None:
        # stack
        stack = frame.stack
        b = stack.pop()
        a = stack.pop()
        # gas
        charge(frame, GAS_LOW)
        # operation
        if type(a) is not type(b):
            raise ExceptionalHalt(f"{mnemonic} compares two u64 values or two byte strings")
        stack.append(1 if (a == b) is want_equal else 0)

    return body


def not_(frame: Frame, _: None) -> None:
    # stack
    a = frame.stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(a) is not int:
        raise not_u64("not operand")
    frame.stack.append(1 if a == 0 else 0)


def bnot(frame: Frame, _: None) -> None:
    # stack
    a = frame.stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(a) is not int:
        raise not_u64("bnot operand")
    frame.stack.append(U64_MAX ^ a)


def shl(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    b = stack.pop()
    a = stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(a) is not int or type(b) is not int:
        raise not_u64_pair("shl")
    if b >= _U64_BITS:
        raise ExceptionalHalt(f"shl by {b} bits (at most 63)")
    stack.append((a << b) & U64_MAX)


def shr(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    b = stack.pop()
    a = stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(a) is not int or type(b) is not int:
        raise not_u64_pair("shr")
    if b >= _U64_BITS:
        raise ExceptionalHalt(f"shr by {b} bits (at most 63)")
    stack.append(a >> b)


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.LT: _u64_binary("lt", operator.lt),
    Op.GT: _u64_binary("gt", operator.gt),
    Op.LE: _u64_binary("le", operator.le),
    Op.GE: _u64_binary("ge", operator.ge),
    Op.EQ: _equality("eq", True),
    Op.NE: _equality("ne", False),
    Op.NOT: not_,
    Op.AND: _u64_binary("and", lambda a, b: a != 0 and b != 0),
    Op.OR: _u64_binary("or", lambda a, b: a != 0 or b != 0),
    Op.BAND: _u64_binary("band", operator.and_),
    Op.BOR: _u64_binary("bor", operator.or_),
    Op.BXOR: _u64_binary("bxor", operator.xor),
    Op.BNOT: bnot,
    Op.SHL: shl,
    Op.SHR: shr,
}
