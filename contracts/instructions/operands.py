"""Operand checks shared by the opcode bodies: a popped value has the type it must have.

Each check returns the value, typed, or raises :class:`ExceptionalHalt` with the words a
receipt's error text carries (they are consensus data: keep them byte for byte). Bodies
that run in every loop test the type inline and raise the error built here, which saves
a call per instruction; either way the words come from this module.

Must never: pop, push or charge gas -- a body does those itself, in its marked steps.
"""

from __future__ import annotations

from contracts.abi import StackValue
from contracts.frame import ExceptionalHalt, Frame
from contracts.limits import ADDRESS_BYTES


def as_u64(value: StackValue, what: str) -> int:
    if type(value) is not int:
        raise not_u64(what)
    return value


def as_bytes(value: StackValue, what: str) -> bytes:
    if type(value) is not bytes:
        raise not_bytes(what)
    return value


def as_address(value: StackValue, what: str) -> bytes:
    if type(value) is not bytes or len(value) != ADDRESS_BYTES:
        raise ExceptionalHalt(f"{what} must be a {ADDRESS_BYTES}-byte address")
    return value


def not_u64(what: str) -> ExceptionalHalt:
    return ExceptionalHalt(f"{what} must be a u64, got bytes")


def not_bytes(what: str) -> ExceptionalHalt:
    return ExceptionalHalt(f"{what} must be bytes, got a u64")


def not_u64_pair(mnemonic: str) -> ExceptionalHalt:
    return ExceptionalHalt(f"{mnemonic} takes two u64 values")


def require_writable(frame: Frame, what: str) -> None:
    if frame.static:
        raise ExceptionalHalt(f"{what} changes state in a read-only call")
