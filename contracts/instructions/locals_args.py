"""Locals and method arguments: load n, store n, arg n, argx, nargs.

Vectors: tests/vectors/vm/locals_args.json. Each subroutine activation has
``MAX_LOCALS`` fresh locals that read 0 until stored; ``n`` was bounded at deploy. The
arguments are the call's, checked against the method's ABI before the frame opened.

Must never: read an argument the call does not have (that halts).
"""

from __future__ import annotations

from typing import Final

from contracts.frame import Body, ExceptionalHalt, Frame
from contracts.gas import GAS_LOW, GAS_VERY_LOW, charge
from contracts.instructions.operands import as_u64
from contracts.opcodes import Op


def load(frame: Frame, n: int) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(frame.locals[n])


def store(frame: Frame, n: int) -> None:
    # stack
    value = frame.stack.pop()
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.locals[n] = value


def arg(frame: Frame, n: int) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    if n >= len(frame.args):
        raise _no_argument("arg", n, frame)
    frame.stack.append(frame.args[n])


def argx(frame: Frame, _: None) -> None:
    # stack
    i = frame.stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    index = as_u64(i, "argx index")
    if index >= len(frame.args):
        raise _no_argument("argx", index, frame)
    frame.stack.append(frame.args[index])


def nargs(frame: Frame, _: None) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(len(frame.args))


def _no_argument(mnemonic: str, index: int, frame: Frame) -> ExceptionalHalt:
    return ExceptionalHalt(f"{mnemonic} {index}: the call has {len(frame.args)} arguments")


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.LOAD: load,
    Op.STORE: store,
    Op.ARG: arg,
    Op.ARGX: argx,
    Op.NARGS: nargs,
}
