"""The machine's moving parts: a call frame, a ready-to-run program, and how bodies signal.

An opcode body (contracts.instructions) gets the current :class:`Frame` and the
instruction's immediate. It returns ``None`` to carry on, or a signal the interpreter acts
on: :class:`Stop` (``return`` / ``halt``), :class:`Revert`, or :class:`CallRequest`
(``call``: the interpreter pushes a new frame -- no Python recursion). Anything the
contract does wrong raises :class:`ExceptionalHalt` (or :class:`OutOfGas`): the frame's
changes are rolled back and all its gas is consumed. Both interpreter loops (the reference
one and the fast path) check the stack with :func:`check_stack` and turn a halt into an
:class:`Outcome` with :func:`halted`, so they fail with the same words.

Must never: import the interpreter loops or the opcode bodies (they import this).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from contracts.abi import ContractAbi, MethodAbi, StackValue
from contracts.limits import MAX_LOCALS, MAX_STACK_ITEMS
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
#: An instruction's immediate, decoded: a u8, u64 or target as an int, pushbytes' bytes.
Immediate = int | bytes | None


@dataclass(frozen=True, slots=True, eq=False)
class Block:
    """A basic block, pre-decoded for the fast path (contracts.fastpath): straight-line
    instructions, entered only at the first, ending where control may go elsewhere."""

    #: Stack values the whole block needs at entry, and the most it may hold at entry
    #: with room for everything the block pushes: within these bounds, no instruction of
    #: the block fails the opcode table's stack check.
    need: int
    room: int
    #: Every instruction but the last, as (pc, body, immediate); none of them signals or
    #: moves the pc.
    body: tuple[tuple[int, Body, Immediate], ...]
    #: The last instruction, as (pc, body, immediate, next pc).
    last: tuple[int, Body, Immediate, int]
    #: Every instruction as (pc, body, values read, stack growth, immediate, next pc), for
    #: an entry outside the bounds: run one by one, checking the stack at each.
    checked: tuple[tuple[int, Body, int, int, Immediate, int], ...]


@dataclass(frozen=True, slots=True, eq=False)
class Program:
    """Validated code ready to run: the reference interpreter decodes ``code`` as it goes,
    the fast path runs ``blocks`` (indexed by the pc that enters each)."""

    code_hash: bytes
    abi: ContractAbi
    code: bytes
    blocks: tuple[Block, ...]


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


class ExecutionStatus(enum.IntEnum):
    """How an execution ended; numbered like ledger.chain.types.ReceiptStatus."""

    SUCCESS = 0
    REVERTED = 1
    OUT_OF_GAS = 2
    INVALID = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one frame ended."""

    status: ExecutionStatus
    gas_left: int
    value: StackValue | None = None  # the result (SUCCESS) or revert reason (REVERTED)
    error: str = ""


def check_stack(depth: int, stack_in: int, growth: int) -> None:
    """Halt unless a stack of ``depth`` values holds an instruction's ``stack_in`` operands
    and has room for it to grow by ``growth``."""
    if depth < stack_in:
        raise ExceptionalHalt(f"stack underflow ({depth} values, {stack_in} needed)")
    if depth + growth > MAX_STACK_ITEMS:
        raise ExceptionalHalt(f"stack overflow (more than {MAX_STACK_ITEMS} values)")


def halted(halt: ExceptionalHalt, pc: int, mnemonic: str) -> Outcome:
    """The outcome of instruction ``mnemonic`` at ``pc`` halting: all the frame's gas is used."""
    if isinstance(halt, OutOfGas):
        return Outcome(ExecutionStatus.OUT_OF_GAS, 0, error=f"out of gas at pc {pc}")
    return Outcome(ExecutionStatus.INVALID, 0, error=f"{mnemonic} at pc {pc}: {halt}")
