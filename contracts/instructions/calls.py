"""Cross-contract calls: call n.

Vectors: tests/vectors/vm/calls.json. ``call n`` pops n arguments, an address, a method
name and a value, and hands the interpreter a :class:`CallRequest`; the interpreter opens
the callee's frame on its own frame stack (no Python recursion) and, when the callee ends,
pushes its result and an ok flag (1 or 0) for the caller.

Must never: start the callee itself, or forward more gas than the caller has left.
"""

from __future__ import annotations

from typing import Final

from contracts.frame import Body, CallRequest, Frame
from contracts.gas import GAS_CALL, call_gas_forwarded, charge
from contracts.instructions.operands import as_bytes, as_u64, require_writable
from contracts.opcodes import Op


def call(frame: Frame, n: int) -> CallRequest:
    # stack
    stack = frame.stack
    v = stack.pop()
    m = stack.pop()
    a = stack.pop()
    args = tuple(stack[len(stack) - n :])
    del stack[len(stack) - n :]
    # gas: the base, then all but 1/64 of what is left goes to the callee (unused gas
    # comes back when it ends)
    charge(frame, GAS_CALL)
    forwarded = call_gas_forwarded(frame.gas)
    charge(frame, forwarded)
    # operation (a halt here uses all the caller's gas, forwarded or not)
    value = as_u64(v, "call value")
    method = as_bytes(m, "call method")
    address = as_bytes(a, "call address")
    if value:
        require_writable(frame, "call with value")
    return CallRequest(address, method, args, value, forwarded)


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.CALL: call,
}
