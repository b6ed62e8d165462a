"""The machine's moving parts: a call frame, a ready-to-run program, and how bodies signal.

An opcode body (contracts.instructions) gets the current :class:`Frame` and the
instruction's immediate. It returns ``None`` to carry on, or a signal the interpreter acts
on: :class:`Stop` (``return`` / ``halt``), :class:`Revert`, or :class:`CallRequest`
(``call``: the interpreter pushes a new frame -- no Python recursion). Anything the
contract does wrong raises :class:`ExceptionalHalt` (or :class:`OutOfGas`): the frame's
changes are rolled back and all its gas is consumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from contracts.abi import ContractAbi, MethodAbi, StackValue
from contracts.limits import MAX_LOCALS
from contracts.state import BlockContext, Checkpoint, WorldState


class ExceptionalHalt(Exception):
    """The contract did something the VM refuses. Never escapes the interpreter."""


class OutOfGas(ExceptionalHalt):
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    """``return`` (with a value) or ``halt`` (value None)."""

    value: StackValue | None


@dataclass(frozen=True, slots=True)
class Revert:
    reason: bytes


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A ``call`` the interpreter should start; ``gas`` is already taken from the caller."""

    address: bytes
    method: bytes
    args: tuple[StackValue, ...]
    value: int
    gas: int


Signal = Stop | Revert | CallRequest
HALT: Final = Stop(None)

#: An opcode body: (frame, immediate) -> signal or None.
Body = Callable[["Frame", Any], Signal | None]
#: One decoded instruction, ready to run:
#: (body, values read, net stack growth, base gas, immediate, next pc).
Step = tuple[Body, int, int, int, int | bytes | None, int]


@dataclass(frozen=True, slots=True, eq=False)
class Program:
    """Validated code prepared for the interpreter (steps indexed by pc)."""

    code_hash: bytes
    abi: ContractAbi
    code: bytes
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class TxEnv:
    """Shared by every frame of one transaction."""

    world: WorldState
    origin: bytes
    block: BlockContext


def fresh_locals() -> list[StackValue]:
    return [0] * MAX_LOCALS


@dataclass(slots=True, eq=False)
class Frame:
    """One live contract call."""

    env: TxEnv
    program: Program
    method: MethodAbi
    address: bytes
    caller: bytes
    value: int
    args: tuple[StackValue, ...]
    gas: int
    static: bool  # state changes refused (a query, a read-only method, or called from one)
    depth: int  # 1 for the transaction's own call
    checkpoint: Checkpoint
    pc: int = field(init=False)  # starts at the method's entry
    stack: list[StackValue] = field(default_factory=list)
    locals: list[StackValue] = field(default_factory=fresh_locals)
    #: Suspended subroutine callers: (return pc, their locals).
    subroutines: list[tuple[int, list[StackValue]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pc = self.method.entry_pc
