"""Gas: every price the VM charges, by name, and the one function that charges it.

A gas unit is roughly one simple step of the interpreter. Storage, balances and calls are
priced for what they cost the ledger (state-tree updates, host reads) rather than the
interpreter. Each opcode body charges its whole price where it runs, in its marked ``gas``
step: the base cost first, then any cost per byte. The opcode table names the same base
and per-byte costs, so the disassembler and the docs can show them, and a test checks that
table and bodies agree.

These numbers are consensus rules: every validator must charge the same gas in the same
order, so changing any of them changes receipts (``gas_used``) and which blocks are valid.

Must never: use floats, charge after a state change, or let a price depend on anything
but operand sizes and the gas left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from contracts.abi import AbiValue
from contracts.frame import Frame, OutOfGas
from contracts.limits import U64_BYTES

# ----------------------------------------------------------------------------- base costs

#: Pushes, pops, locals, arguments, the environment, halting.
GAS_VERY_LOW: Final = 1
#: Jumps, simple arithmetic, comparisons, logic, conversions.
GAS_LOW: Final = 2
#: Multiplication, division, and the base of concat and slice.
GAS_MID: Final = 3
#: Entering a subroutine (its fresh locals).
GAS_SUBROUTINE: Final = 4
#: The base of sha256.
GAS_HASH: Final = 20
#: Reading a storage slot through the host.
GAS_STORAGE_READ: Final = 100
#: Reading an account balance through the host.
GAS_BALANCE_READ: Final = 100
#: The base of an event.
GAS_EVENT: Final = 100
#: Deleting a storage slot.
GAS_STORAGE_DELETE: Final = 200
#: The base of writing a storage slot.
GAS_STORAGE_WRITE: Final = 500
#: Moving value out of the contract's balance (two balance updates).
GAS_TRANSFER: Final = 500
#: The base of a cross-contract call (the callee's gas comes on top).
GAS_CALL: Final = 700

# ----------------------------------------------------------------------------- per byte

#: Per byte of a new byte string (concat, slice).
GAS_PER_BYTE_COPY: Final = 1
#: Per byte hashed by sha256.
GAS_PER_BYTE_HASH: Final = 1
#: Per byte of a storage key and value written.
GAS_PER_BYTE_STORAGE: Final = 10
#: Per byte of an event's name and arguments (a u64 counts as 8 bytes).
GAS_PER_BYTE_EVENT: Final = 8

# ----------------------------------------------------------------------------- outside opcodes

#: Charged before a transaction's call starts: finding the code, checking arguments.
GAS_CALL_INTRINSIC: Final = 200
#: Charged before a deploy starts: validating the code, setting up the account.
GAS_DEPLOY_INTRINSIC: Final = 1000
#: Per byte of deployed code (the whole container), charged before validation.
GAS_PER_CODE_BYTE: Final = 20
#: Per byte of a transaction's ABI arguments (a u64 counts as 8 bytes).
GAS_PER_ARG_BYTE: Final = 1
#: A cross-contract call forwards all but 1/CALL_GAS_RESERVE_DIVISOR of the caller's
#: remaining gas, so the caller can always handle the callee's failure.
CALL_GAS_RESERVE_DIVISOR: Final = 64


def charge(frame: Frame, gas: int) -> None:
    """Take ``gas`` from the frame, or halt it out of gas (taking nothing)."""
    left = frame.gas - gas
    if left < 0:
        raise OutOfGas("out of gas")
    frame.gas = left


def call_gas_forwarded(gas_left: int) -> int:
    """What a ``call`` gives its callee out of the caller's ``gas_left``."""
    return gas_left - gas_left // CALL_GAS_RESERVE_DIVISOR


def call_intrinsic_gas(args: Sequence[AbiValue]) -> int:
    """Gas a transaction's call (or query) costs before its first instruction."""
    return GAS_CALL_INTRINSIC + _args_gas(args)


def deploy_intrinsic_gas(code: bytes, args: Sequence[AbiValue]) -> int:
    """Gas a deploy costs before its constructor's first instruction."""
    return GAS_DEPLOY_INTRINSIC + GAS_PER_CODE_BYTE * len(code) + _args_gas(args)


def _args_gas(args: Sequence[AbiValue]) -> int:
    size = 0
    for arg in args:
        if isinstance(arg, str):
            size += len(arg.encode("utf-8", "replace"))
        elif isinstance(arg, bytes):
            size += len(arg)
        else:
            size += U64_BYTES
    return GAS_PER_ARG_BYTE * size
