"""u64 arithmetic: add, sub, mul, div, mod.

Vectors: tests/vectors/vm/arithmetic.json. Integers are u64: a result outside
[0, 2**64) halts, never wraps; division and remainder by zero halt.

Must never: wrap around, or produce anything but an int in the u64 range.
"""

from __future__ import annotations

from typing import Final

from contracts.frame import Body, ExceptionalHalt, Frame
from contracts.gas import GAS_LOW, GAS_MID, charge
from contracts.instructions.operands import not_u64_pair
from contracts.limits import U64_MAX
from contracts.opcodes import Op


def add(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    b = stack.pop()
    a = stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(a) is not int or type(b) is not int:
        raise not_u64_pair("add")
    result = a + b
    if result > U64_MAX:
        raise ExceptionalHalt("add overflows u64")
    stack.append(result)


def sub(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    b = stack.pop()
    a = stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(a) is not int or type(b) is not int:
        raise not_u64_pair("sub")
    if b > a:
        raise ExceptionalHalt("sub underflows u64")
    stack.append(a - b)


def mul(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    b = stack.pop()
    a = stack.pop()
    # gas
    charge(frame, GAS_MID)
    # operation
    if type(a) is not int or type(b) is not int:
        raise not_u64_pair("mul")
    result = a * b
    if result > U64_MAX:
        raise ExceptionalHalt("mul overflows u64")
    stack.append(result)


def div(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    b = stack.pop()
    a = stack.pop()
    # gas
    charge(frame, GAS_MID)
    # operation
    if type(a) is not int or type(b) is not int:
        raise not_u64_pair("div")
    if b == 0:
        raise ExceptionalHalt("div by zero")
    stack.append(a // b)


def mod(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    b = stack.pop()
    a = stack.pop()
    # gas
    charge(frame, GAS_MID)
    # operation
    if type(a) is not int or type(b) is not int:
        raise not_u64_pair("mod")
    if b == 0:
        raise ExceptionalHalt("mod by zero")
    stack.append(a % b)


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.ADD: add,
    Op.SUB: sub,
    Op.MUL: mul,
    Op.DIV: div,
    Op.MOD: mod,
}
