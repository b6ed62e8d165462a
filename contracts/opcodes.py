"""The opcode table: the one place that says what each opcode is.

For every opcode: its byte, its mnemonic, its immediate (at most one), how many stack
values it reads and leaves, and the names of its costs in :mod:`contracts.gas` (base and
per byte). The validator, both interpreter loops, the assembler and the disassembler read
this table; none of them spells an opcode's shape again. Gas is charged by each opcode's
body (:mod:`contracts.instructions`), which names the same costs; a test checks they agree.

Stack notation in the summaries: ``a b -> c`` means ``b`` is on top before the operation.
An opcode whose immediate ``n`` is a count (``dup n``, ``swap n``, ``call n``, ``emit n``)
touches ``n`` more stack values than its base entry says: see :class:`Variadic`.

Must never: import the interpreter, or describe an opcode anywhere but here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from contracts.gas import (
    GAS_BALANCE_READ,
    GAS_CALL,
    GAS_EVENT,
    GAS_HASH,
    GAS_LOW,
    GAS_MID,
    GAS_PER_BYTE_COPY,
    GAS_PER_BYTE_EVENT,
    GAS_PER_BYTE_HASH,
    GAS_PER_BYTE_STORAGE,
    GAS_STORAGE_DELETE,
    GAS_STORAGE_READ,
    GAS_STORAGE_WRITE,
    GAS_SUBROUTINE,
    GAS_TRANSFER,
    GAS_VERY_LOW,
)
from contracts.limits import MAX_ARGS, MAX_LOCALS, MAX_STACK_ITEMS


class Op(enum.IntEnum):
    # control
    HALT = 0x00
    RETURN = 0x01
    REVERT = 0x02
    JUMP = 0x03
    JZ = 0x04
    JNZ = 0x05
    CALLSUB = 0x06
    RETSUB = 0x07
    ASSERT = 0x08
    # stack
    PUSHINT = 0x10
    PUSHBYTES = 0x11
    POP = 0x12
    DUP = 0x13
    SWAP = 0x14
    # u64 arithmetic
    ADD = 0x20
    SUB = 0x21
    MUL = 0x22
    DIV = 0x23
    MOD = 0x24
    # comparison
    LT = 0x28
    GT = 0x29
    LE = 0x2A
    GE = 0x2B
    EQ = 0x2C
    NE = 0x2D
    # logic and bits
    NOT = 0x30
    AND = 0x31
    OR = 0x32
    BAND = 0x33
    BOR = 0x34
    BXOR = 0x35
    BNOT = 0x36
    SHL = 0x37
    SHR = 0x38
    # byte strings
    LEN = 0x40
    CONCAT = 0x41
    SLICE = 0x42
    ITOB = 0x43
    BTOI = 0x44
    SHA256 = 0x45
    # locals and arguments
    LOAD = 0x50
    STORE = 0x51
    ARG = 0x52
    ARGX = 0x53
    NARGS = 0x54
    # storage
    SLOAD = 0x60
    SSTORE = 0x61
    SDELETE = 0x62
    # events
    EMIT = 0x68
    # environment
    CALLER = 0x70
    SELF = 0x71
    ORIGIN = 0x72
    HEIGHT = 0x73
    TIMESTAMP = 0x74
    CALLVALUE = 0x75
    BALANCE = 0x76
    # value and calls
    TRANSFER = 0x78
    CALL = 0x79


class Imm(enum.Enum):
    """Immediate kinds and their encodings in the code section (big-endian)."""

    U8 = "u8"  # one byte; the opcode entry bounds its range
    U64 = "u64"  # eight bytes
    BYTES = "bytes"  # a two-byte length, then that many bytes
    TARGET = "target"  # two bytes: an absolute offset in the code section


#: Bytes an immediate occupies after the opcode byte (BYTES: its length prefix only).
IMM_SIZES: Final = {Imm.U8: 1, Imm.U64: 8, Imm.BYTES: 2, Imm.TARGET: 2}


class Variadic(enum.Enum):
    """How a count immediate ``n`` widens the stack effect of the base entry."""

    NONE = "none"
    IN = "in"  # reads n more values (call n, emit n)
    IN_OUT = "in_out"  # reads and leaves n more values (dup n, swap n)


@dataclass(frozen=True, slots=True)
class OpSpec:
    op: Op
    mnemonic: str
    stack_in: int
    stack_out: int
    base_gas: int  # both costs are charged by the opcode's body, never from here
    summary: str
    imm: Imm | None = None
    imm_min: int = 0  # U8 immediates only: inclusive range
    imm_max: int = 0
    variadic: Variadic = Variadic.NONE
    byte_gas: int = 0  # per byte, as the summary says
    terminal: bool = False  # control never falls through to the next instruction

    @property
    def size(self) -> int:
        """Encoded size without BYTES payload."""
        return 1 + (IMM_SIZES[self.imm] if self.imm is not None else 0)

    def stack_effect(self, imm: int | bytes | None) -> tuple[int, int]:
        """(values read, values left) for this instruction, its immediate applied."""
        n = imm if self.variadic is not Variadic.NONE and isinstance(imm, int) else 0
        return self.stack_in + n, self.stack_out + (n if self.variadic is Variadic.IN_OUT else 0)


_U8_COUNT: Final = 255


def _spec(
    op: Op,
    stack: tuple[int, int],
    gas: int,
    summary: str,
    *,
    imm: Imm | None = None,
    imm_min: int = 0,
    imm_max: int = 0,
    variadic: Variadic = Variadic.NONE,
    byte_gas: int = 0,
    terminal: bool = False,
) -> tuple[Op, OpSpec]:
    mnemonic = op.name.lower()
    spec = OpSpec(
        op, mnemonic, stack[0], stack[1], gas, summary, imm, imm_min, imm_max, variadic, byte_gas,
        terminal,
    )  # fmt: skip
    return op, spec


OPCODES: Final[dict[Op, OpSpec]] = dict(
    [
        # control
        _spec(Op.HALT, (0, 0), GAS_VERY_LOW, "stop; the method returns no value", terminal=True),
        _spec(Op.RETURN, (1, 0), GAS_VERY_LOW, "v -> ; stop and return v", terminal=True),
        _spec(
            Op.REVERT, (1, 0), GAS_VERY_LOW, "reason -> ; undo this call, refund gas",
            terminal=True,
        ),
        _spec(Op.JUMP, (0, 0), GAS_LOW, "jump to target", imm=Imm.TARGET, terminal=True),
        _spec(Op.JZ, (1, 0), GAS_LOW, "x -> ; jump to target if x == 0", imm=Imm.TARGET),
        _spec(Op.JNZ, (1, 0), GAS_LOW, "x -> ; jump to target if x != 0", imm=Imm.TARGET),
        _spec(Op.CALLSUB, (0, 0), GAS_SUBROUTINE, "call subroutine (fresh locals)", imm=Imm.TARGET),
        _spec(Op.RETSUB, (0, 0), GAS_LOW, "return from subroutine", terminal=True),
        _spec(Op.ASSERT, (1, 0), GAS_VERY_LOW, "x -> ; exceptional halt if x == 0"),
        # stack
        _spec(Op.PUSHINT, (0, 1), GAS_VERY_LOW, "-> n", imm=Imm.U64),
        _spec(Op.PUSHBYTES, (0, 1), GAS_VERY_LOW, "-> bytes", imm=Imm.BYTES),
        _spec(Op.POP, (1, 0), GAS_VERY_LOW, "x -> "),
        _spec(
            Op.DUP, (1, 2), GAS_VERY_LOW, "copy the value n below the top onto the top",
            imm=Imm.U8, imm_max=_U8_COUNT, variadic=Variadic.IN_OUT,
        ),
        _spec(
            Op.SWAP, (1, 1), GAS_VERY_LOW, "exchange the top with the value n below it",
            imm=Imm.U8, imm_min=1, imm_max=_U8_COUNT, variadic=Variadic.IN_OUT,
        ),
        # u64 arithmetic: overflow, underflow and division by zero halt
        _spec(Op.ADD, (2, 1), GAS_LOW, "a b -> a+b"),
        _spec(Op.SUB, (2, 1), GAS_LOW, "a b -> a-b"),
        _spec(Op.MUL, (2, 1), GAS_MID, "a b -> a*b"),
        _spec(Op.DIV, (2, 1), GAS_MID, "a b -> a//b"),
        _spec(Op.MOD, (2, 1), GAS_MID, "a b -> a%b"),
        # comparison: 1 for true, 0 for false
        _spec(Op.LT, (2, 1), GAS_LOW, "a b -> a<b"),
        _spec(Op.GT, (2, 1), GAS_LOW, "a b -> a>b"),
        _spec(Op.LE, (2, 1), GAS_LOW, "a b -> a<=b"),
        _spec(Op.GE, (2, 1), GAS_LOW, "a b -> a>=b"),
        _spec(Op.EQ, (2, 1), GAS_LOW, "a b -> a==b (two u64 or two byte strings)"),
        _spec(Op.NE, (2, 1), GAS_LOW, "a b -> a!=b (two u64 or two byte strings)"),
        # logic (0 is false, anything else true) and bits
        _spec(Op.NOT, (1, 1), GAS_LOW, "a -> a==0"),
        _spec(Op.AND, (2, 1), GAS_LOW, "a b -> a!=0 and b!=0"),
        _spec(Op.OR, (2, 1), GAS_LOW, "a b -> a!=0 or b!=0"),
        _spec(Op.BAND, (2, 1), GAS_LOW, "a b -> a&b"),
        _spec(Op.BOR, (2, 1), GAS_LOW, "a b -> a|b"),
        _spec(Op.BXOR, (2, 1), GAS_LOW, "a b -> a^b"),
        _spec(Op.BNOT, (1, 1), GAS_LOW, "a -> ~a (64 bits)"),
        _spec(Op.SHL, (2, 1), GAS_LOW, "a n -> a<<n, high bits dropped; n < 64"),
        _spec(Op.SHR, (2, 1), GAS_LOW, "a n -> a>>n; n < 64"),
        # byte strings
        _spec(Op.LEN, (1, 1), GAS_VERY_LOW, "b -> len(b)"),
        _spec(
            Op.CONCAT, (2, 1), GAS_MID, "a b -> a+b; per result byte",
            byte_gas=GAS_PER_BYTE_COPY,
        ),
        _spec(
            Op.SLICE, (3, 1), GAS_MID, "b i j -> b[i:j]; i<=j<=len; per result byte",
            byte_gas=GAS_PER_BYTE_COPY,
        ),
        _spec(Op.ITOB, (1, 1), GAS_LOW, "n -> 8-byte big-endian"),
        _spec(Op.BTOI, (1, 1), GAS_LOW, "b -> big-endian u64 of at most 8 bytes"),
        _spec(
            Op.SHA256, (1, 1), GAS_HASH, "b -> sha256(b); per input byte",
            byte_gas=GAS_PER_BYTE_HASH,
        ),
        # locals (unset locals read 0) and method arguments
        _spec(Op.LOAD, (0, 1), GAS_VERY_LOW, "-> local n", imm=Imm.U8, imm_max=MAX_LOCALS - 1),
        _spec(
            Op.STORE, (1, 0), GAS_VERY_LOW, "v -> ; local n = v",
            imm=Imm.U8, imm_max=MAX_LOCALS - 1,
        ),
        _spec(Op.ARG, (0, 1), GAS_VERY_LOW, "-> argument n", imm=Imm.U8, imm_max=MAX_ARGS - 1),
        _spec(Op.ARGX, (1, 1), GAS_LOW, "i -> argument i"),
        _spec(Op.NARGS, (0, 1), GAS_VERY_LOW, "-> number of arguments"),
        # storage: absent keys read as empty bytes; storing empty bytes deletes
        _spec(Op.SLOAD, (1, 1), GAS_STORAGE_READ, "key -> value"),
        _spec(
            Op.SSTORE, (2, 0), GAS_STORAGE_WRITE, "key value -> ; per byte of key and value",
            byte_gas=GAS_PER_BYTE_STORAGE,
        ),
        _spec(Op.SDELETE, (1, 0), GAS_STORAGE_DELETE, "key -> "),
        # events
        _spec(
            Op.EMIT, (1, 0), GAS_EVENT, "a1..an name -> ; per byte of name and args (u64: 8)",
            imm=Imm.U8, imm_max=MAX_ARGS, variadic=Variadic.IN, byte_gas=GAS_PER_BYTE_EVENT,
        ),
        # environment
        _spec(Op.CALLER, (0, 1), GAS_VERY_LOW, "-> address of the caller"),
        _spec(Op.SELF, (0, 1), GAS_VERY_LOW, "-> address of this contract"),
        _spec(Op.ORIGIN, (0, 1), GAS_VERY_LOW, "-> address of the transaction's sender"),
        _spec(Op.HEIGHT, (0, 1), GAS_VERY_LOW, "-> block height"),
        _spec(Op.TIMESTAMP, (0, 1), GAS_VERY_LOW, "-> block timestamp (ms)"),
        _spec(Op.CALLVALUE, (0, 1), GAS_VERY_LOW, "-> value sent with this call"),
        _spec(Op.BALANCE, (1, 1), GAS_BALANCE_READ, "address -> balance"),
        # value and calls
        _spec(Op.TRANSFER, (2, 0), GAS_TRANSFER, "to amount -> ; from this contract's balance"),
        _spec(
            Op.CALL, (3, 2), GAS_CALL, "a1..an address method value -> result ok",
            imm=Imm.U8, imm_max=MAX_ARGS, variadic=Variadic.IN,
        ),
    ]
)  # fmt: skip

#: Mnemonic -> opcode, for the assembler.
BY_MNEMONIC: Final[dict[str, OpSpec]] = {spec.mnemonic: spec for spec in OPCODES.values()}

#: Opcode byte -> spec, for the validator (unknown bytes are absent).
BY_BYTE: Final[dict[int, OpSpec]] = {int(spec.op): spec for spec in OPCODES.values()}

#: Opcodes that change state; a read-only call halts on them (CALL only when it sends value).
STATE_CHANGING: Final = frozenset({Op.SSTORE, Op.SDELETE, Op.EMIT, Op.TRANSFER})


def _check_table() -> None:
    if len(BY_MNEMONIC) != len(OPCODES) or list(OPCODES) != list(Op):
        raise AssertionError("the opcode table must list every opcode once, in order")
    for spec in OPCODES.values():
        if spec.imm is not Imm.U8 and spec.variadic is not Variadic.NONE:
            raise AssertionError(f"{spec.mnemonic}: a count immediate must be a U8")
        if spec.stack_out - spec.stack_in > 1 or spec.stack_in > MAX_STACK_ITEMS:
            raise AssertionError(f"{spec.mnemonic}: unexpected stack effect")


_check_table()
