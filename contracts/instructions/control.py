"""Control flow: halt, return, revert, jumps, subroutines and assert.

Vectors: tests/vectors/vm/control.json. Jump targets were checked at deploy (they are
instruction starts), so a body sets ``frame.pc`` without checking it.

Must never: recurse through Python for ``callsub`` -- a subroutine is a saved (pc, locals)
pair on the frame, bounded by ``MAX_SUBROUTINE_DEPTH``.
"""

from __future__ import annotations

from typing import Final

from contracts.abi import stack_value_fits
from contracts.frame import HALT, Body, ExceptionalHalt, Frame, Revert, Stop
from contracts.gas import GAS_LOW, GAS_SUBROUTINE, GAS_VERY_LOW, charge
from contracts.instructions.operands import as_bytes, not_u64
from contracts.limits import MAX_SUBROUTINE_DEPTH
from contracts.opcodes import Op


def halt(frame: Frame, _: None) -> Stop:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    if frame.method.returns is not None:
        raise ExceptionalHalt(f"halt: {frame.method.name} must return a {frame.method.returns}")
    return HALT


def return_(frame: Frame, _: None) -> Stop:
    # stack
    value = frame.stack.pop()
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    returns = frame.method.returns
    if returns is None:
        raise ExceptionalHalt(f"return: {frame.method.name} declares no result (use halt)")
    if not stack_value_fits(value, returns):
        raise ExceptionalHalt(f"return: the result is not a valid {returns}")
    return Stop(value)


def revert(frame: Frame, _: None) -> Revert:
    # stack
    reason = frame.stack.pop()
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    return Revert(as_bytes(reason, "revert reason"))


def jump(frame: Frame, target: int) -> None:
    # gas
    charge(frame, GAS_LOW)
    # operation
    frame.pc = target


def jz(frame: Frame, target: int) -> None:
    # stack
    condition = frame.stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(condition) is not int:
        raise not_u64("jz condition")
    if condition == 0:
        frame.pc = target


def jnz(frame: Frame, target: int) -> None:
    # stack
    condition = frame.stack.pop()
    # gas
    charge(frame, GAS_LOW)
    # operation
    if type(condition) is not int:
        raise not_u64("jnz condition")
    if condition != 0:
        frame.pc = target


def callsub(frame: Frame, target: int) -> None:
    # gas
    charge(frame, GAS_SUBROUTINE)
    # operation
    if len(frame.subroutines) >= MAX_SUBROUTINE_DEPTH:
        raise ExceptionalHalt(f"callsub: more than {MAX_SUBROUTINE_DEPTH} nested subroutines")
    frame.subroutines.append((frame.pc, frame.locals))
    frame.locals = [0] * len(frame.locals)
    frame.pc = target


def retsub(frame: Frame, _: None) -> None:
    # gas
    charge(frame, GAS_LOW)
    # operation
    if not frame.subroutines:
        raise ExceptionalHalt("retsub outside a subroutine")
    frame.pc, frame.locals = frame.subroutines.pop()


def assert_(frame: Frame, _: None) -> None:
    # stack
    condition = frame.stack.pop()
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    if type(condition) is not int:
        raise not_u64("assert condition")
    if condition == 0:
        raise ExceptionalHalt("assert failed")


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.HALT: halt,
    Op.RETURN: return_,
    Op.REVERT: revert,
    Op.JUMP: jump,
    Op.JZ: jz,
    Op.JNZ: jnz,
    Op.CALLSUB: callsub,
    Op.RETSUB: retsub,
    Op.ASSERT: assert_,
}
