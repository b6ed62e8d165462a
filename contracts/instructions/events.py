"""Events: emit n.

Vectors: tests/vectors/vm/events.json. ``emit n`` pops an event name (1 to
``MAX_NAME_BYTES`` bytes of UTF-8) and n arguments; events go into the journaled world
state, so a call that fails takes its events with it. A transaction emits at most
``MAX_EVENTS``.

Must never: emit in a read-only call, or emit before the event's gas is charged.
"""

from __future__ import annotations

from typing import Final

from contracts.frame import Body, ExceptionalHalt, Frame
from contracts.gas import GAS_EVENT, GAS_PER_BYTE_EVENT, charge
from contracts.instructions.operands import as_bytes, require_writable
from contracts.limits import MAX_EVENTS, MAX_NAME_BYTES, U64_BYTES
from contracts.opcodes import Op
from contracts.state import EventRecord


def emit(frame: Frame, n: int) -> None:
    # stack
    stack = frame.stack
    raw_name = stack.pop()
    args = tuple(stack[len(stack) - n :])
    del stack[len(stack) - n :]
    # gas: the base, then per byte of name and arguments (a u64 counts as 8 bytes)
    charge(frame, GAS_EVENT)
    name_bytes = as_bytes(raw_name, "event name")
    require_writable(frame, "emit")
    try:
        name = name_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ExceptionalHalt("event name is not UTF-8 text") from None
    if not 0 < len(name_bytes) <= MAX_NAME_BYTES:
        raise ExceptionalHalt(f"event name must be 1 to {MAX_NAME_BYTES} bytes")
    size = len(name_bytes)
    for value in args:
        size += len(value) if isinstance(value, bytes) else U64_BYTES
    charge(frame, GAS_PER_BYTE_EVENT * size)
    # operation
    world = frame.env.world
    if len(world.events) >= MAX_EVENTS:
        raise ExceptionalHalt(f"more than {MAX_EVENTS} events in one transaction")
    world.emit(EventRecord(frame.address, name, args))


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.EMIT: emit,
}
