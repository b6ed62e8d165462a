"""Opcode bodies and the implementation table (one body per opcode of contracts.opcodes).

Before a body runs, the interpreter's loop has already done what the opcode table says
for every opcode: checked that the stack holds enough values and has room for the result,
and charged the base gas. Each body then works in three marked steps:

* ``stack``: pop its operands and check their types;
* ``gas``: charge the gas that depends on operand sizes (per-byte gas), before any work;
* ``operation``: do it, raising :class:`ExceptionalHalt` for anything the contract got
  wrong (overflow, a bad index, a state change in a read-only call, ...).

Integers are u64: results outside [0, 2**64) halt, never wrap (``shl`` drops high bits by
definition). Byte strings are at most ``MAX_BYTES_LENGTH`` long.

Must never: raise anything but ExceptionalHalt for a contract's mistake, loop or recurse
for longer than the gas charged allows, or consult anything outside the frame.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Final

from contracts.abi import StackValue, stack_value_fits
from contracts.frame import HALT, Body, CallRequest, ExceptionalHalt, Frame, OutOfGas, Revert, Stop
from contracts.limits import (
    ADDRESS_BYTES,
    CALL_GAS_RESERVE_DIVISOR,
    MAX_BYTES_LENGTH,
    MAX_EVENTS,
    MAX_NAME_BYTES,
    MAX_STORAGE_KEY_BYTES,
    MAX_SUBROUTINE_DEPTH,
    U64_BYTES,
    U64_MAX,
)
from contracts.opcodes import OPCODES, Op
from contracts.state import EventRecord
from crypto.hashing import sha256 as sha256_digest

_U64_BITS: Final = 64


def charge(frame: Frame, gas: int) -> None:
    if gas > frame.gas:
        raise OutOfGas("out of gas")
    frame.gas -= gas


def _u64(value: StackValue, what: str) -> int:
    if type(value) is not int:
        raise ExceptionalHalt(f"{what} must be a u64, got bytes")
    return value


def _bytes(value: StackValue, what: str) -> bytes:
    if type(value) is not bytes:
        raise ExceptionalHalt(f"{what} must be bytes, got a u64")
    return value


def _address(value: StackValue, what: str) -> bytes:
    if type(value) is not bytes or len(value) != ADDRESS_BYTES:
        raise ExceptionalHalt(f"{what} must be a {ADDRESS_BYTES}-byte address")
    return value


def _writable(frame: Frame, what: str) -> None:
    if frame.static:
        raise ExceptionalHalt(f"{what} changes state in a read-only call")


# ----------------------------------------------------------------------------- control


def halt(frame: Frame, _: None) -> Stop:
    # operation
    if frame.method.returns is not None:
        raise ExceptionalHalt(f"halt: {frame.method.name} must return a {frame.method.returns}")
    return HALT


def return_(frame: Frame, _: None) -> Stop:
    # stack
    value = frame.stack.pop()
    returns = frame.method.returns
    if returns is None:
        raise ExceptionalHalt(f"return: {frame.method.name} declares no result (use halt)")
    if not stack_value_fits(value, returns):
        raise ExceptionalHalt(f"return: the result is not a valid {returns}")
    # operation
    return Stop(value)


def revert(frame: Frame, _: None) -> Revert:
    # stack
    reason = _bytes(frame.stack.pop(), "revert reason")
    # operation
    return Revert(reason)


def jump(frame: Frame, target: int) -> None:
    # operation
    frame.pc = target


def jz(frame: Frame, target: int) -> None:
    # stack
    if _u64(frame.stack.pop(), "jz condition") == 0:
        # operation
        frame.pc = target


def jnz(frame: Frame, target: int) -> None:
    # stack
    if _u64(frame.stack.pop(), "jnz condition") != 0:
        # operation
        frame.pc = target


def callsub(frame: Frame, target: int) -> None:
    # operation
    if len(frame.subroutines) >= MAX_SUBROUTINE_DEPTH:
        raise ExceptionalHalt(f"callsub: more than {MAX_SUBROUTINE_DEPTH} nested subroutines")
    frame.subroutines.append((frame.pc, frame.locals))
    frame.locals = [0] * len(frame.locals)
    frame.pc = target


def retsub(frame: Frame, _: None) -> None:
    # operation
    if not frame.subroutines:
        raise ExceptionalHalt("retsub outside a subroutine")
    frame.pc, frame.locals = frame.subroutines.pop()


def assert_(frame: Frame, _: None) -> None:
    # stack
    if _u64(frame.stack.pop(), "assert condition") == 0:
        # operation
        raise ExceptionalHalt("assert failed")


# ----------------------------------------------------------------------------- stack


def push(frame: Frame, value: StackValue) -> None:
    # operation (pushint and pushbytes: the validator bounded the immediate)
    frame.stack.append(value)


def pop(frame: Frame, _: None) -> None:
    # stack
    frame.stack.pop()


def dup(frame: Frame, n: int) -> None:
    # operation
    frame.stack.append(frame.stack[-1 - n])


def swap(frame: Frame, n: int) -> None:
    # operation
    stack = frame.stack
    stack[-1], stack[-1 - n] = stack[-1 - n], stack[-1]


# ----------------------------------------------------------------------------- u64 arithmetic


def _pop_u64_pair(frame: Frame, mnemonic: str) -> tuple[int, int]:
    stack = frame.stack
    b = stack.pop()
    a = stack.pop()
    if type(a) is not int or type(b) is not int:
        raise ExceptionalHalt(f"{mnemonic} takes two u64 values")
    return a, b


def add(frame: Frame, _: None) -> None:
    # stack
    a, b = _pop_u64_pair(frame, "add")
    # operation
    result = a + b
    if result > U64_MAX:
        raise ExceptionalHalt("add overflows u64")
    frame.stack.append(result)


def sub(frame: Frame, _: None) -> None:
    # stack
    a, b = _pop_u64_pair(frame, "sub")
    # operation
    if b > a:
        raise ExceptionalHalt("sub underflows u64")
    frame.stack.append(a - b)


def mul(frame: Frame, _: None) -> None:
    # stack
    a, b = _pop_u64_pair(frame, "mul")
    # operation
    result = a * b
    if result > U64_MAX:
        raise ExceptionalHalt("mul overflows u64")
    frame.stack.append(result)


def div(frame: Frame, _: None) -> None:
    # stack
    a, b = _pop_u64_pair(frame, "div")
    # operation
    if b == 0:
        raise ExceptionalHalt("div by zero")
    frame.stack.append(a // b)


def mod(frame: Frame, _: None) -> None:
    # stack
    a, b = _pop_u64_pair(frame, "mod")
    # operation
    if b == 0:
        raise ExceptionalHalt("mod by zero")
    frame.stack.append(a % b)


def _u64_binary(mnemonic: str, fn: Callable[[int, int], int]) -> Body:
    """A body for an operation on two u64 values that cannot leave the u64 range."""

    def body(frame: Frame, _: None) -> None:
        # stack
        stack = frame.stack
        b = stack.pop()
        a = stack.pop()
        if type(a) is not int or type(b) is not int:
            raise ExceptionalHalt(f"{mnemonic} takes two u64 values")
        # operation
        stack.append(int(fn(a, b)))

    return body


def _equality(mnemonic: str, want_equal: bool) -> Body:
    def body(frame: Frame, _: None) -> None:
        # stack
        stack = frame.stack
        b = stack.pop()
        a = stack.pop()
        if type(a) is not type(b):
            raise ExceptionalHalt(f"{mnemonic} compares two u64 values or two byte strings")
        # operation
        stack.append(1 if (a == b) is want_equal else 0)

    return body


def not_(frame: Frame, _: None) -> None:
    # stack
    a = _u64(frame.stack.pop(), "not operand")
    # operation
    frame.stack.append(1 if a == 0 else 0)


def bnot(frame: Frame, _: None) -> None:
    # stack
    a = _u64(frame.stack.pop(), "bnot operand")
    # operation
    frame.stack.append(U64_MAX ^ a)


def shl(frame: Frame, _: None) -> None:
    # stack
    a, n = _pop_u64_pair(frame, "shl")
    # operation
    if n >= _U64_BITS:
        raise ExceptionalHalt(f"shl by {n} bits (at most 63)")
    frame.stack.append((a << n) & U64_MAX)


def shr(frame: Frame, _: None) -> None:
    # stack
    a, n = _pop_u64_pair(frame, "shr")
    # operation
    if n >= _U64_BITS:
        raise ExceptionalHalt(f"shr by {n} bits (at most 63)")
    frame.stack.append(a >> n)


# ----------------------------------------------------------------------------- byte strings

_CONCAT_BYTE_GAS: Final = OPCODES[Op.CONCAT].byte_gas
_SLICE_BYTE_GAS: Final = OPCODES[Op.SLICE].byte_gas
_SHA256_BYTE_GAS: Final = OPCODES[Op.SHA256].byte_gas
_SSTORE_BYTE_GAS: Final = OPCODES[Op.SSTORE].byte_gas
_EMIT_BYTE_GAS: Final = OPCODES[Op.EMIT].byte_gas


def len_(frame: Frame, _: None) -> None:
    # stack
    b = _bytes(frame.stack.pop(), "len operand")
    # operation
    frame.stack.append(len(b))


def concat(frame: Frame, _: None) -> None:
    # stack
    b = _bytes(frame.stack.pop(), "concat operand")
    a = _bytes(frame.stack.pop(), "concat operand")
    size = len(a) + len(b)
    if size > MAX_BYTES_LENGTH:
        raise ExceptionalHalt(f"concat result of {size} bytes is over {MAX_BYTES_LENGTH}")
    # gas
    charge(frame, _CONCAT_BYTE_GAS * size)
    # operation
    frame.stack.append(a + b)


def slice_(frame: Frame, _: None) -> None:
    # stack
    end = _u64(frame.stack.pop(), "slice end")
    start = _u64(frame.stack.pop(), "slice start")
    b = _bytes(frame.stack.pop(), "slice operand")
    if not start <= end <= len(b):
        raise ExceptionalHalt(f"slice [{start}:{end}] of {len(b)} bytes is out of bounds")
    # gas
    charge(frame, _SLICE_BYTE_GAS * (end - start))
    # operation
    frame.stack.append(b[start:end])


def itob(frame: Frame, _: None) -> None:
    # stack
    n = _u64(frame.stack.pop(), "itob operand")
    # operation
    frame.stack.append(n.to_bytes(U64_BYTES, "big"))


def btoi(frame: Frame, _: None) -> None:
    # stack
    b = _bytes(frame.stack.pop(), "btoi operand")
    if len(b) > U64_BYTES:
        raise ExceptionalHalt(f"btoi of {len(b)} bytes (at most {U64_BYTES})")
    # operation
    frame.stack.append(int.from_bytes(b, "big"))


def sha256(frame: Frame, _: None) -> None:
    # stack
    b = _bytes(frame.stack.pop(), "sha256 operand")
    # gas
    charge(frame, _SHA256_BYTE_GAS * len(b))
    # operation
    frame.stack.append(sha256_digest(b))


# ----------------------------------------------------------------------------- locals, arguments


def load(frame: Frame, n: int) -> None:
    # operation
    frame.stack.append(frame.locals[n])


def store(frame: Frame, n: int) -> None:
    # stack, operation
    frame.locals[n] = frame.stack.pop()


def _argument(frame: Frame, index: int, mnemonic: str) -> StackValue:
    if index >= len(frame.args):
        raise ExceptionalHalt(f"{mnemonic} {index}: the call has {len(frame.args)} arguments")
    return frame.args[index]


def arg(frame: Frame, n: int) -> None:
    # operation
    frame.stack.append(_argument(frame, n, "arg"))


def argx(frame: Frame, _: None) -> None:
    # stack
    index = _u64(frame.stack.pop(), "argx index")
    # operation
    frame.stack.append(_argument(frame, index, "argx"))


def nargs(frame: Frame, _: None) -> None:
    # operation
    frame.stack.append(len(frame.args))


# ----------------------------------------------------------------------------- storage


def _key(value: StackValue, mnemonic: str) -> bytes:
    key = _bytes(value, f"{mnemonic} key")
    if len(key) > MAX_STORAGE_KEY_BYTES:
        raise ExceptionalHalt(f"{mnemonic} key of {len(key)} bytes is over {MAX_STORAGE_KEY_BYTES}")
    return key


def sload(frame: Frame, _: None) -> None:
    # stack
    key = _key(frame.stack.pop(), "sload")
    # operation
    value = frame.env.world.storage(frame.address, key)
    if len(value) > MAX_BYTES_LENGTH:
        raise ExceptionalHalt(f"sload: stored value of {len(value)} bytes is over the limit")
    frame.stack.append(value)


def sstore(frame: Frame, _: None) -> None:
    # stack
    value = _bytes(frame.stack.pop(), "sstore value")
    key = _key(frame.stack.pop(), "sstore")
    _writable(frame, "sstore")
    # gas
    charge(frame, _SSTORE_BYTE_GAS * (len(key) + len(value)))
    # operation
    frame.env.world.set_storage(frame.address, key, value)


def sdelete(frame: Frame, _: None) -> None:
    # stack
    key = _key(frame.stack.pop(), "sdelete")
    _writable(frame, "sdelete")
    # operation
    frame.env.world.set_storage(frame.address, key, b"")


# ----------------------------------------------------------------------------- events


def emit(frame: Frame, n: int) -> None:
    # stack
    stack = frame.stack
    raw_name = _bytes(stack.pop(), "event name")
    args = tuple(stack[len(stack) - n :])
    del stack[len(stack) - n :]
    _writable(frame, "emit")
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError:
        raise ExceptionalHalt("event name is not UTF-8 text") from None
    if not 0 < len(raw_name) <= MAX_NAME_BYTES:
        raise ExceptionalHalt(f"event name must be 1 to {MAX_NAME_BYTES} bytes")
    # gas
    size = len(raw_name)
    for value in args:
        size += len(value) if isinstance(value, bytes) else U64_BYTES
    charge(frame, _EMIT_BYTE_GAS * size)
    # operation
    world = frame.env.world
    if len(world.events) >= MAX_EVENTS:
        raise ExceptionalHalt(f"more than {MAX_EVENTS} events in one transaction")
    world.emit(EventRecord(frame.address, name, args))


# ----------------------------------------------------------------------------- environment
# No operands and no per-byte gas: each body is its operation.


def caller(frame: Frame, _: None) -> None:
    frame.stack.append(frame.caller)


def self_(frame: Frame, _: None) -> None:
    frame.stack.append(frame.address)


def origin(frame: Frame, _: None) -> None:
    frame.stack.append(frame.env.origin)


def height(frame: Frame, _: None) -> None:
    frame.stack.append(frame.env.block.height)


def timestamp(frame: Frame, _: None) -> None:
    frame.stack.append(frame.env.block.timestamp_ms)


def callvalue(frame: Frame, _: None) -> None:
    frame.stack.append(frame.value)


def balance(frame: Frame, _: None) -> None:
    # stack
    address = _address(frame.stack.pop(), "balance operand")
    # operation
    frame.stack.append(frame.env.world.balance(address))


# ----------------------------------------------------------------------------- value and calls


def transfer(frame: Frame, _: None) -> None:
    # stack
    amount = _u64(frame.stack.pop(), "transfer amount")
    to = _address(frame.stack.pop(), "transfer recipient")
    _writable(frame, "transfer")
    # operation
    world = frame.env.world
    available = world.balance(frame.address)
    if amount > available:
        raise ExceptionalHalt(f"transfer of {amount} with a balance of {available}")
    if amount == 0 or to == frame.address:
        return
    received = world.balance(to) + amount
    if received > U64_MAX:
        raise ExceptionalHalt("transfer overflows the recipient's balance")
    world.set_balance(frame.address, available - amount)
    world.set_balance(to, received)


def call(frame: Frame, n: int) -> CallRequest:
    # stack
    stack = frame.stack
    value = _u64(stack.pop(), "call value")
    method = _bytes(stack.pop(), "call method")
    address = _bytes(stack.pop(), "call address")
    args = tuple(stack[len(stack) - n :])
    del stack[len(stack) - n :]
    if value:
        _writable(frame, "call with value")
    # gas: the callee gets all but 1/64 of what is left; unused gas comes back
    forwarded = frame.gas - frame.gas // CALL_GAS_RESERVE_DIVISOR
    charge(frame, forwarded)
    # operation (the interpreter opens the callee's frame)
    return CallRequest(address, method, args, value, forwarded)


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
    Op.PUSHINT: push,
    Op.PUSHBYTES: push,
    Op.POP: pop,
    Op.DUP: dup,
    Op.SWAP: swap,
    Op.ADD: add,
    Op.SUB: sub,
    Op.MUL: mul,
    Op.DIV: div,
    Op.MOD: mod,
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
    Op.LEN: len_,
    Op.CONCAT: concat,
    Op.SLICE: slice_,
    Op.ITOB: itob,
    Op.BTOI: btoi,
    Op.SHA256: sha256,
    Op.LOAD: load,
    Op.STORE: store,
    Op.ARG: arg,
    Op.ARGX: argx,
    Op.NARGS: nargs,
    Op.SLOAD: sload,
    Op.SSTORE: sstore,
    Op.SDELETE: sdelete,
    Op.EMIT: emit,
    Op.CALLER: caller,
    Op.SELF: self_,
    Op.ORIGIN: origin,
    Op.HEIGHT: height,
    Op.TIMESTAMP: timestamp,
    Op.CALLVALUE: callvalue,
    Op.BALANCE: balance,
    Op.TRANSFER: transfer,
    Op.CALL: call,
}

if list(IMPLEMENTATIONS) != list(Op):
    raise AssertionError("every opcode needs exactly one body, in table order")
