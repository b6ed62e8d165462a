"""The operand stack: push, pop, dup n and swap n.

Vectors: tests/vectors/vm/stack.json. The interpreter checked the stack's height against
the opcode table before the body runs (``dup n`` and ``swap n`` reach n values deeper),
so these bodies index the stack without checking. Immediates were bounded at deploy.

Must never: let the stack grow past ``MAX_STACK_ITEMS`` (the table's stack effect is what
the interpreter checks, so a body pushes exactly what the table says).
"""

from __future__ import annotations

from typing import Final

from contracts.abi import StackValue
from contracts.frame import Body, Frame
from contracts.gas import GAS_VERY_LOW, charge
from contracts.opcodes import Op


def push(frame: Frame, value: StackValue) -> None:
    """``pushint n`` and ``pushbytes b``: the value is the immediate."""
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(value)


def pop(frame: Frame, _: None) -> None:
    # stack
    frame.stack.pop()
    # gas
    charge(frame, GAS_VERY_LOW)


def dup(frame: Frame, n: int) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(frame.stack[-1 - n])


def swap(frame: Frame, n: int) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    stack = frame.stack
    stack[-1], stack[-1 - n] = stack[-1 - n], stack[-1]


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.PUSHINT: push,
    Op.PUSHBYTES: push,
    Op.POP: pop,
    Op.DUP: dup,
    Op.SWAP: swap,
}
